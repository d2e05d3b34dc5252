"""The central stock pool's capability: reservations for orders (called by the order workflow),
and the StockPump workflow that shows each channel its quantity."""

from workflows.stock.workflow import StockPumpWorkflow, StockReconcileWorkflow

__all__ = ["StockReconcileWorkflow", "StockPumpWorkflow"]
