"""Temporal workflows (deterministic orchestration) and the activities they call (side effects)."""
