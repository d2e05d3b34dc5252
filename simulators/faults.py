"""Fault injection shared by all simulators.

Faults are configured, never random without a seed: the same seed and the same request sequence
give the same faults, so a failing test can be replayed.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from pydantic import BaseModel, Field


class FaultConfig(BaseModel):
    """Probabilities (0..1) of each fault per request, plus fixed latency."""

    latency_ms: int = Field(0, ge=0, description="added to every request")
    error_5xx_rate: float = Field(0.0, ge=0, le=1, description="answer HTTP 503")
    throttle_rate: float = Field(0.0, ge=0, le=1, description="answer 429 / platform throttle error")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with a 429")
    timeout_rate: float = Field(0.0, ge=0, le=1, description="hang for timeout_s before answering")
    timeout_s: float = Field(30.0, ge=0)
    duplicate_rate: float = Field(0.0, ge=0, le=1, description="return a record twice in a page / push twice")
    seed: int = 7


@dataclass
class FaultInjector:
    """Decides, per request, which fault (if any) to inject."""

    config: FaultConfig = field(default_factory=FaultConfig)
    _rng: random.Random = field(init=False)
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)

    def reconfigure(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def _roll(self, rate: float, name: str) -> bool:
        if rate <= 0:
            return False
        hit = self._rng.random() < rate
        if hit:
            self.injected[name] = self.injected.get(name, 0) + 1
        return hit

    async def before_request(self) -> str | None:
        """Sleep for latency/timeouts; return 'error_5xx' or 'throttle' when one must be answered."""
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        if self._roll(self.config.timeout_rate, "timeout"):
            await asyncio.sleep(self.config.timeout_s)
        if self._roll(self.config.error_5xx_rate, "error_5xx"):
            return "error_5xx"
        if self._roll(self.config.throttle_rate, "throttle"):
            return "throttle"
        return None

    def duplicate(self) -> bool:
        return self._roll(self.config.duplicate_rate, "duplicate")
