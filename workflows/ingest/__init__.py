"""The ingest capability: scheduled incremental pulls and backfills, and their activities."""

from workflows.ingest.backfill import BackfillWorkflow
from workflows.ingest.workflow import IngestWorkflow, ingest_workflow_id

__all__ = ["BackfillWorkflow", "IngestWorkflow", "ingest_workflow_id"]
