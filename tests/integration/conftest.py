"""A real embedded Temporal dev server for the whole session, on a free port, headless.

Each test gets its own hub (store in its tmp dir, own task queue, API on a free port) on that
server, so tests stay independent while paying the server start-up once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hub.runtime import HubRuntime
from hub.settings import Settings
from simulators.server import free_port
from worker.embedded import EmbeddedTemporal


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTemporal]:
    home = tmp_path_factory.mktemp("temporal")
    server = EmbeddedTemporal(home / "temporal.db", port=free_port(), headless=True)
    server.start()
    yield server
    server.stop()


def hub_settings(tmp_path: Path, server: EmbeddedTemporal) -> Settings:
    return Settings(home=tmp_path / "var", temporal_address=server.address, api_port=free_port(),
                    task_queue=f"test-{uuid.uuid4().hex[:8]}", log_format="console", log_level="INFO")


@pytest.fixture
async def hub(tmp_path: Path, temporal_server: EmbeddedTemporal) -> AsyncIterator[HubRuntime]:
    rt = await HubRuntime(hub_settings(tmp_path, temporal_server)).start()
    try:
        yield rt
    finally:
        await rt.stop()


def api_client(hub: HubRuntime, role: str = "admin") -> httpx.AsyncClient:
    """An HTTP client of the hub's API carrying a fresh token of ``role``."""
    assert hub.store
    token = hub.store.create_token(f"test-{role}-{uuid.uuid4().hex[:6]}", role, "tests")
    return httpx.AsyncClient(base_url=hub.settings.api_url, headers={"Authorization": f"Bearer {token}"})
