"""The central stock pool's capability: reservations for orders (called by the order workflow),
and one StockSync workflow per SKU that shows each channel its quantity."""

from workflows.stock.workflow import StockReconcileWorkflow, StockSyncWorkflow

__all__ = ["StockReconcileWorkflow", "StockSyncWorkflow"]
