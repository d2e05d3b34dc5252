"""One hub, one engine: the embedded Temporal server belongs to its state directory.

Starts one real dev server (headless, free port) for the whole module: a second state directory
asking for the same port is refused with a line naming the first; the first one's own state
directory reuses it; a stale record does not make a foreign server look like ours.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.settings import Settings
from simulators.server import free_port
from worker.embedded import EmbeddedTemporal, TemporalPortTaken, holder_of


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTemporal]:
    home = tmp_path_factory.mktemp("hub-a")
    server = EmbeddedTemporal(home / "temporal.db", port=free_port(), headless=True)
    server.start()
    yield server
    server.stop()


def test_a_started_server_records_itself_in_its_state_directory(first: EmbeddedTemporal) -> None:
    record = json.loads((first.db_path.parent / "temporal.json").read_text())
    assert first.process is not None and record["pid"] == first.process.pid
    assert record["port"] == first.port and record["db"] == str(first.db_path.resolve())
    assert first.own_server() is not None
    pid, db = holder_of(first.port) or (0, None)
    assert pid == first.process.pid and db == first.db_path.resolve()


def test_the_same_state_directory_reuses_its_own_server(first: EmbeddedTemporal) -> None:
    again = EmbeddedTemporal(first.db_path, port=first.port, headless=True).start()
    assert again.reused and again.process is None
    again.stop()  # not ours to stop: the server and its record stay
    assert first.process is not None and first.process.poll() is None
    assert (first.db_path.parent / "temporal.json").exists()


def test_another_state_directory_on_the_same_port_is_refused(first: EmbeddedTemporal, tmp_path: Path) -> None:
    other = EmbeddedTemporal(tmp_path / "var" / "temporal.db", port=first.port, headless=True)
    with pytest.raises(TemporalPortTaken) as refused:
        other.start()
    message = str(refused.value)
    assert "\n" not in message and str(first.db_path.parent.resolve()) in message
    assert "TONGDAO_TEMPORAL_PORT" in message
    assert other.process is None and not (tmp_path / "var" / "temporal.json").exists()


def test_same_state_directory_on_another_port_is_refused(first: EmbeddedTemporal) -> None:
    """Two servers on one SQLite file would corrupt it."""
    with pytest.raises(TemporalPortTaken, match=rf"already runs on port {first.port}"):
        EmbeddedTemporal(first.db_path, port=free_port(), headless=True).start()


def test_a_stale_record_does_not_make_a_foreign_server_ours(first: EmbeddedTemporal, tmp_path: Path) -> None:
    db = tmp_path / "temporal.db"
    # a record left by a crashed server whose pid is now someone else's (here: the first server)
    assert first.process is not None
    db.with_suffix(".json").write_text(json.dumps({"pid": first.process.pid, "port": first.port, "db": str(db)}))
    with pytest.raises(TemporalPortTaken, match="held by the Temporal server"):
        EmbeddedTemporal(db, port=first.port, headless=True).start()


def test_anything_else_on_the_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(TemporalPortTaken, match="held by another program"):
            EmbeddedTemporal(tmp_path / "temporal.db", port=port, headless=True).start()


def test_the_ui_port_is_checked_too(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        ui_port = sock.getsockname()[1]
        with pytest.raises(TemporalPortTaken, match="TONGDAO_TEMPORAL_UI_PORT"):
            EmbeddedTemporal(tmp_path / "temporal.db", port=free_port(), ui_port=ui_port).start()


def test_queue_and_namespace_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TONGDAO_HOME", str(tmp_path / "b"))
    monkeypatch.setenv("TONGDAO_TASK_QUEUE", "hub-b")
    monkeypatch.setenv("TONGDAO_TEMPORAL_NAMESPACE", "ns-b")
    monkeypatch.setenv("TONGDAO_TEMPORAL_PORT", "17233")
    s = Settings()
    assert (s.task_queue, s.temporal_namespace, s.temporal_target) == ("hub-b", "ns-b", "127.0.0.1:17233")
    assert s.temporal_db == (tmp_path / "b" / "temporal.db").resolve()
