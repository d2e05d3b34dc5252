"""Local simulators of the external systems Tongdao talks to.

Each simulator is written from the platform's public documentation, independently of the
connectors (it never imports ``connectors``, ``mappings`` or ``canonical``), so that a wrong
connector is caught instead of agreed with. They are seeded and deterministic, enforce the real
protocol (signatures, pagination, throttling, error format) and can inject faults.
"""
