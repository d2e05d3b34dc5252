"""The secret key ring: several keys (the first encrypts, all decrypt), a key file outside the state
directory, and ``tongdao secrets rotate``, after which the old key can be dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from store import open_store
from store.db import Store
from store.secrets import SecretBox, SecretKeyError

TRADE: dict[str, Any] = json.loads((Path(__file__).parents[1] / "fixtures" / "taobao_trade.json").read_text("utf-8"))
KEY = f"taobao:tmall-main:{TRADE['tid']}"
A, B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def open_with(tmp_path: Path, key: str) -> Store:
    return open_store(f"sqlite:///{tmp_path}/t.db", key, tmp_path)


def fill(store: Store) -> int:
    store.save_connector("shop", "taobao", {"app_key": "1"}, {"app_secret": "s3cr3t-value"}, "alice")
    raw_id = store.put_raw("shop", "order", str(TRADE["tid"]), TRADE, None)
    store.upsert_order(KEY, channel="taobao", shop="tmall-main", external_id=str(TRADE["tid"]),
                       source_connector="shop", raw_id=raw_id, stage="mapped",
                       canonical={"key": KEY, "receiver": {"name": "王小明", "mobile": "13812345678"},
                                  "buyer": {"nick": "t**_buyer", "id": "x"}})
    return raw_id


def readable(store: Store, raw_id: int) -> bool:
    return (store.connector_secrets(store.get_connector("shop")) == {"app_secret": "s3cr3t-value"}
            and store.get_raw(raw_id).payload["receiver_mobile"] == "13812345678"
            and store.get_order(KEY).canonical["receiver"]["name"] == "王小明")


def test_rotate_from_a_to_b_then_b_alone_reads_everything(tmp_path: Path) -> None:
    raw_id = fill(open_with(tmp_path, A))
    with pytest.raises(SecretKeyError, match="not the key they were sealed with"):
        readable(open_with(tmp_path, B), raw_id)

    ring = open_with(tmp_path, f"{B},{A}")  # the new key first, the old one kept to decrypt
    assert ring.box.key_count == 2 and readable(ring, raw_id)
    counts = ring.rotate_secrets()
    assert counts["connectors"] == 1 and counts["raw_documents"] == 1 and counts["orders"] == 1
    assert counts["fields_rotated"] >= 6 and counts["fields_sealed"] == 0

    assert readable(open_with(tmp_path, B), raw_id)  # A can go
    with pytest.raises(SecretKeyError):
        open_with(tmp_path, A).get_order(KEY)


def test_new_values_are_sealed_with_the_first_key(tmp_path: Path) -> None:
    ring = open_with(tmp_path, f"{B},{A}")
    raw_id = fill(ring)
    assert readable(open_with(tmp_path, B), raw_id)


def test_rotation_seals_what_an_older_version_left_in_clear(tmp_path: Path) -> None:
    store = open_with(tmp_path, A)
    raw_id = fill(store)
    with store.session() as s:  # as a store written before personal data was encrypted
        from store.tables import RawDocument

        s.get(RawDocument, raw_id).payload = TRADE
    assert store.get_raw(raw_id).payload["receiver_mobile"] == "13812345678"  # old rows still read
    counts = store.rotate_secrets()
    assert counts["fields_sealed"] >= 8 and counts["raw_documents"] == 1
    store.engine.dispose()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))
    assert b"13812345678" not in data and readable(open_with(tmp_path, A), raw_id)


@pytest.mark.parametrize(("spec", "message"), [
    (f"{A},not-a-key", "TONGDAO_SECRET_KEY is not a Fernet key (entry 2 of 2)"),
    ("not-a-key", "TONGDAO_SECRET_KEY is not a Fernet key (32 url-safe"),
    (" , ", "TONGDAO_SECRET_KEY holds no key"),
])
def test_a_bad_ring_is_one_sentence(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(SecretKeyError) as err:
        SecretBox.from_settings(spec, tmp_path)
    assert message in str(err.value) and "not-a-key" not in str(err.value) and A not in str(err.value)


def test_key_file_outside_the_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, keys = tmp_path / "var", tmp_path / "keys" / "tongdao.keys"
    keys.parent.mkdir()
    keys.write_text(f"# the first key encrypts\n{B}\n{A}\n")
    monkeypatch.setenv("TONGDAO_SECRET_KEY_FILE", str(keys))
    store = open_store(f"sqlite:///{home}/t.db", None, home)
    assert store.box.key_count == 2 and not (home / "secret.key").exists()
    assert store.box.source == f"TONGDAO_SECRET_KEY_FILE ({keys})"
    monkeypatch.setenv("TONGDAO_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SecretKeyError, match="cannot read TONGDAO_SECRET_KEY_FILE"):
        open_store(f"sqlite:///{home}/t.db", None, home)


def test_a_key_file_inside_the_state_directory_is_a_warning_in_production(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        SecretBox.from_settings(None, tmp_path, production=False)
        assert logs == []
        SecretBox.from_settings(None, tmp_path, production=True)
        inside = tmp_path / "mine.keys"
        inside.write_text(A)
        SecretBox.from_settings(None, tmp_path, inside, production=True)
        outside = tmp_path.parent / f"{tmp_path.name}-outside.keys"
        outside.write_text(A)
        try:
            SecretBox.from_settings(None, tmp_path, outside, production=True)
        finally:
            outside.unlink()
    events = [e for e in logs if e["event"] == "secrets.key_file_in_state_directory"]
    assert [e["key_file"] for e in events] == [str(tmp_path / "secret.key"), str(inside)]
    assert all(e["log_level"] == "warning" and A not in json.dumps(e) for e in events)


def test_secrets_rotate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import app
    from hub.settings import get_settings

    home = tmp_path / "var"
    monkeypatch.setenv("TONGDAO_HOME", str(home))
    monkeypatch.delenv("TONGDAO_SECRET_KEY_FILE", raising=False)
    url = f"sqlite:///{(home / 'tongdao.db').resolve()}"
    raw_id = fill(open_store(url, A, home))
    runner = CliRunner()
    try:
        monkeypatch.setenv("TONGDAO_SECRET_KEY", f"{B},{A}")
        get_settings.cache_clear()
        result = runner.invoke(app, ["secrets", "rotate", "--json"])
        assert result.exit_code == 0, result.output
        counts = json.loads(result.stdout.strip().splitlines()[-1])
        assert counts["keys_in_ring"] == 2 and counts["connectors"] == 1 and counts["orders"] == 1
        result = runner.invoke(app, ["secrets", "rotate"])
        assert result.exit_code == 0 and "re-encrypted with the first of 2 keys: 1 connectors' secrets" in result.output
        monkeypatch.setenv("TONGDAO_SECRET_KEY", A)  # rotated away from: refused in one line
        get_settings.cache_clear()
        result = runner.invoke(app, ["secrets", "rotate"])
        assert result.exit_code == 1 and "cannot rotate the secrets of connector shop" in result.output
        assert A not in result.output
    finally:
        get_settings.cache_clear()
    assert readable(open_store(url, B, home), raw_id)
