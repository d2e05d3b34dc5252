"""The ``/_sim/state`` and ``/_sim/faults`` endpoints every simulator serves the same way."""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulators.faults import FaultConfig, FaultInjector


class SimAdmin:
    """Mixed into a simulator with ``state()``, ``faults`` and ``_lock``."""

    faults: FaultInjector
    _lock: threading.RLock

    def state(self) -> dict[str, Any]:  # pragma: no cover - each simulator has its own
        raise NotImplementedError

    async def _admin_state(self, request: Request) -> Response:
        return JSONResponse(json.loads(json.dumps(self.state(), default=str)))

    async def _admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                config = FaultConfig.model_validate(await request.json())
            except (ValidationError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
            with self._lock:
                self.faults.reconfigure(config)
        return JSONResponse(self.faults.config.model_dump())
