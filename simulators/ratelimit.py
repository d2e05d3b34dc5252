"""The simulated platforms' call limits: one token bucket per app (or per shop and operation)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class CallBucket:
    """``rate`` calls per second, bursts up to ``burst`` (default ``max(1, rate)``)."""

    rate: float
    burst: float = 0.0
    tokens: float = field(init=False)
    last: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.burst = float(self.burst or max(1.0, self.rate))
        self.tokens = self.burst

    def wait(self) -> float:
        """Take a token: 0 when the call may go through, else the seconds until one would."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self) -> bool:
        """Take a token if there is one."""
        return self.wait() == 0.0
