"""Activity options of an order's steps, from its flow (used by the workflow and its step mixins)."""

from __future__ import annotations

from typing import Any

from temporalio.common import RetryPolicy

from workflows.models import Route


def step_options(route: Route, step: str) -> dict[str, Any]:
    """Activity timeout and retry policy of a step, as the flow configured them (safe defaults)."""
    o = route.options(step)
    return {"start_to_close_timeout": o.timeout,
            "retry_policy": RetryPolicy(initial_interval=o.initial_interval, backoff_coefficient=2.0,
                                        maximum_interval=o.max_interval, maximum_attempts=o.max_attempts)}
