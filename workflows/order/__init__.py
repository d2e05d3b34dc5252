"""The order capability: one workflow per channel order, its activities, its routing, and the
client-side calls (pushes, replays) that talk to running order workflows."""

from workflows.order.workflow import OrderWorkflow, order_workflow_id

__all__ = ["OrderWorkflow", "order_workflow_id"]
