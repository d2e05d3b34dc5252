"""The whole hub in one process: embedded (or external) Temporal, store, worker and HTTP API.

``tongdao up``, ``tongdao demo`` and the integration tests all start the hub through
:class:`HubRuntime`, so what the tests exercise is what users run.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
import uvicorn
from temporalio.client import Client
from temporalio.worker import Worker

from connectors.registry import ConnectorPool
from hub.settings import Settings
from store import Store, open_store
from worker.client import connect
from worker.codec import EncryptionCodec, KeySource
from worker.embedded import EmbeddedTemporal
from worker.worker import build_worker
from workflows import search

log = structlog.get_logger("tongdao.runtime")


@dataclass
class HubRuntime:
    settings: Settings
    run_api: bool = True
    run_worker: bool = True
    headless_ui: bool = False
    temporal: EmbeddedTemporal | None = field(default=None, init=False)
    client: Client | None = field(default=None, init=False)
    store: Store | None = field(default=None, init=False)
    pool: ConnectorPool | None = field(default=None, init=False)
    worker: Worker | None = field(default=None, init=False)
    _tasks: list[asyncio.Task] = field(default_factory=list, init=False)
    _api: uvicorn.Server | None = field(default=None, init=False)

    async def start(self) -> HubRuntime:
        s = self.settings
        s.ensure_home()
        if s.embedded:
            self.temporal = EmbeddedTemporal(s.temporal_db, port=s.temporal_port, ui_port=s.temporal_ui_port,
                                             headless=self.headless_ui, namespace=s.temporal_namespace,
                                             ui_codec_endpoint=f"{s.api_url}/codec" if self.run_api else "")
            await asyncio.to_thread(self.temporal.start)
        # payloads are encrypted with the settings' keyring; loaded now so a bad key fails the start, not an order
        codec = EncryptionCodec(KeySource(s.payload_keys.get_secret_value() if s.payload_keys else None,
                                          s.payload_keys_file, s.home))
        log.info("temporal.payload_codec", active_key=codec.keyring.active_id, keys=len(codec.keyring.keys))
        self.client = await connect(s.temporal_target, s.temporal_namespace, codec=codec)
        added = await search.ensure_registered(self.client, s.temporal_namespace)
        if added:
            log.info("temporal.search_attributes_added", names=added)
        self.store = await asyncio.to_thread(
            open_store, s.db_url, s.secret_key.get_secret_value() if s.secret_key else None, s.home,
            secret_key_file=s.secret_key_file)
        from store.ratebudget import StoreRateBudget

        # platform rate limits count in the store, so they hold across every worker process
        self.pool = ConnectorPool(self.store, StoreRateBudget(self.store))
        if self.run_worker:
            from flows.runtime import FlowOps

            flows = await FlowOps(self.client, self.store, s.task_queue, "hub").reconcile()
            if flows:
                log.info("flows.reconciled", flows=flows)
            from workflows.audit.client import start_audit

            await start_audit(self.client, self.store, s.task_queue)  # spec texts by hash, the archiver's schedule
            from workflows.stock.client import start_stock

            await start_stock(self.client, self.store, s.task_queue)  # the stock reconciliation schedule
        if self.run_worker:
            self.worker = build_worker(self.client, self.store, self.pool, s.task_queue)
            self._tasks.append(asyncio.create_task(self.worker.run(), name="worker"))
        if self.run_api:
            from hub.api import create_app

            app = create_app(self)
            config = uvicorn.Config(app, host=s.api_host, port=s.api_port, log_level="warning", lifespan="off")
            self._api = uvicorn.Server(config)
            self._api.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            self._tasks.append(asyncio.create_task(self._api.serve(), name="api"))
            for _ in range(100):
                if self._api.started:
                    break
                await asyncio.sleep(0.05)
        log.info("hub.started", temporal=s.temporal_target, api=s.api_url if self.run_api else None,
                 store=s.db_url.split("@")[-1])
        return self

    async def stop(self) -> None:
        if self._api is not None:
            self._api.should_exit = True
        if self.worker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.worker.shutdown(), timeout=15)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        if self.pool is not None:
            await self.pool.aclose()
        if self.temporal is not None:
            await asyncio.to_thread(self.temporal.stop)

    async def __aenter__(self) -> HubRuntime:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
