"""Building the Temporal worker: which workflows and activities it runs, and how many at once."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from connectors.registry import ConnectorPool
from store import Store
from workflows.activities import HubActivities
from workflows.backfill import BackfillWorkflow
from workflows.ingest import IngestWorkflow
from workflows.order import OrderWorkflow

WORKFLOWS = [OrderWorkflow, IngestWorkflow, BackfillWorkflow]


def activities_of(acts: HubActivities) -> list:
    return [
        acts.prepare_order,
        acts.create_wms_order,
        acts.create_erp_order,
        acts.resolve_quarantine,
        acts.park_failed_step,
        acts.poll_shipment,
        acts.write_back_shipment,
        acts.load_cursor,
        acts.ingest_window,
    ]


def build_worker(client: Client, store: Store, pool: ConnectorPool, task_queue: str) -> Worker:
    acts = HubActivities(store, pool, client, task_queue)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities_of(acts),
        max_concurrent_activities=200,
        max_concurrent_local_activities=100,
        max_concurrent_workflow_tasks=100,
    )
