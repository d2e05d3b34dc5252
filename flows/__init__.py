"""Declarative flows: sources, mappings, targets with routing rules, schedule, retry policy.

    from flows import load_flow, check_against_registry

    flow = load_flow(Path("examples/flows/minimal.yaml"))
    problems = check_against_registry(flow, store)

The model and its validation live in ``flows.model``; turning flows into Temporal Schedules and
operating them lives in ``flows.runtime``. See docs/flows.md.
"""

from flows.model import (
    Flow,
    FlowError,
    FlowSchedule,
    FlowSource,
    FlowTargets,
    RouteRule,
    StepPolicy,
    check_against_registry,
    load_flow,
    parse_flow,
)

__all__ = [
    "Flow",
    "FlowError",
    "FlowSchedule",
    "FlowSource",
    "FlowTargets",
    "RouteRule",
    "StepPolicy",
    "check_against_registry",
    "load_flow",
    "parse_flow",
]
