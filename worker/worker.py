"""Building the Temporal worker: which workflows and activities it runs, and how many at once."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from connectors.registry import ConnectorPool
from store import Store
from workflows.audit import AuditArchiverWorkflow
from workflows.audit.archive import AuditActivities
from workflows.decisions.activities import DecisionActivities
from workflows.fulfilment.activities import FulfilmentActivities
from workflows.ingest import BackfillWorkflow, IngestWorkflow
from workflows.ingest.activities import IngestActivities
from workflows.order import OrderWorkflow
from workflows.order.activities import OrderActivities
from workflows.order.legacy import OrderSyncV1
from workflows.order.shipping import ShipmentActivities
from workflows.stock import StockPumpWorkflow, StockReconcileWorkflow
from workflows.stock.activities import StockActivities

WORKFLOWS = [OrderWorkflow, OrderSyncV1, IngestWorkflow, BackfillWorkflow, AuditArchiverWorkflow, StockPumpWorkflow,
             StockReconcileWorkflow]


def activities_of(store: Store, pool: ConnectorPool, client: Client, task_queue: str) -> list:
    """Every activity the worker runs: each capability's activities, bound to the shared resources."""
    found = []
    orders = OrderActivities(store, pool)
    for acts in (orders, ShipmentActivities(store, pool, orders), IngestActivities(store, pool, client, task_queue),
                 AuditActivities(store, client), StockActivities(store, pool, client, task_queue),
                 DecisionActivities(store), FulfilmentActivities(store, pool)):
        for name in dir(acts):
            method = getattr(acts, name)
            if callable(method) and hasattr(method, "__temporal_activity_definition"):
                found.append(method)
    return found


def build_worker(client: Client, store: Store, pool: ConnectorPool, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities_of(store, pool, client, task_queue),
        max_concurrent_activities=200,
        max_concurrent_local_activities=100,
        max_concurrent_workflow_tasks=100,
    )
