"""The audit capability: an order's timeline built from its Temporal history and the hub store,
the archiver that keeps closed histories after Temporal's retention (a workflow on a Schedule, and
its activity), and the client-side helpers the API and the CLI call."""

from workflows.audit.models import ArchiveCounts, ArchiverInput, Timeline, TimelineEntry
from workflows.audit.workflow import AuditArchiverWorkflow

__all__ = ["ArchiveCounts", "ArchiverInput", "AuditArchiverWorkflow", "Timeline", "TimelineEntry"]
