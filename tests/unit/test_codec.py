"""The payload codec: what Temporal stores is ciphertext, any key of the keyring decrypts, rotation
keeps old histories readable, unencrypted payloads pass through, tampering is detected; and the
codec-server routes of the API (roles, CORS, the protocol's base64 JSON)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from hub.api import create_app
from hub.settings import Settings
from store import open_store
from worker.client import data_converter
from worker.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    Keyring,
    KeySource,
    PayloadCodecError,
    UnknownPayloadKey,
    convert_payloads_in,
    decode_history,
    payloads_from_json,
    payloads_to_json,
)
from worker.worker import WORKFLOWS

KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()
HISTORIES = Path(__file__).parents[1] / "histories"


class Order(BaseModel):
    order_key: str
    receiver_phone: str


ORDER = Order(order_key="taobao:tmall-main:3912345678901234567", receiver_phone="13800138000")


def codec(spec: str) -> EncryptionCodec:
    return EncryptionCodec(Keyring.parse(spec))


async def test_roundtrip_through_the_hub_data_converter() -> None:
    converter = data_converter(codec(f"a:{KEY_A}"))
    [payload] = await converter.encode([ORDER])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID] == b"a"
    assert b"13800138000" not in payload.SerializeToString()
    assert b"3912345678901234567" not in payload.SerializeToString()
    assert await converter.decode([payload], [Order]) == [ORDER]


async def test_each_payload_gets_a_fresh_nonce() -> None:
    c = codec(f"a:{KEY_A}")
    clear = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    one, two = await c.encode([clear, clear])
    assert one.data[:12] != two.data[:12] and one.data != two.data
    assert await c.decode([one, two]) == [clear, clear]


async def test_unknown_key_id_is_named() -> None:
    [sealed] = await codec(f"old-2025:{KEY_A}").encode([Payload(data=b"x")])
    with pytest.raises(UnknownPayloadKey, match="'old-2025'") as info:
        await codec(f"new:{KEY_B}").decode([sealed])
    assert info.value.key_id == "old-2025"
    assert KEY_B not in str(info.value)


async def test_rotation_keeps_old_payloads_readable_and_encrypts_with_the_new_key() -> None:
    before = codec(f"a:{KEY_A}")
    [old] = await before.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"old"')])
    rotated = codec(f"b:{KEY_B},a:{KEY_A}")
    [new] = await rotated.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"new"')])
    assert new.metadata[KEY_ID] == b"b"
    assert [p.data for p in await rotated.decode([old, new])] == [b'"old"', b'"new"']
    with pytest.raises(UnknownPayloadKey, match="'b'"):  # the previous keyring never knew the new key
        await before.decode([new])


async def test_payloads_recorded_before_the_codec_pass_through() -> None:
    plain = (await data_converter(None).encode([ORDER]))[0]
    assert plain.metadata["encoding"] == b"json/plain"
    assert await data_converter(codec(f"a:{KEY_A}")).decode([plain], [Order]) == [ORDER]


async def test_old_histories_replay_with_the_codec() -> None:
    """Histories recorded without encryption replay on a worker whose converter has the codec."""
    path = HISTORIES / "order_lifecycle_completed.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=WORKFLOWS, data_converter=data_converter(codec(f"a:{KEY_A}"))).replay_workflow(history)


async def test_a_whole_history_decodes_back_to_its_clear_form() -> None:
    """What ``fetch_history`` returns is the stored, encrypted form; ``decode_history`` gives the clear one."""
    path = HISTORIES / "order_lifecycle_split.json"
    clear = WorkflowHistory.from_json(path.stem, path.read_text())
    c = codec(f"a:{KEY_A}")
    sealed_events = []
    for event in clear.events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        await convert_payloads_in(copy, c.encode)
        sealed_events.append(copy)
    sealed = WorkflowHistory(clear.workflow_id, sealed_events)
    raw = sealed.to_json()
    assert "YmluYXJ5L2VuY3J5cHRlZA==" in raw and "anNvbi9wbGFpbg==" not in raw  # binary/encrypted, no json/plain
    decoded = await decode_history(sealed, c)
    assert list(decoded.events) == list(clear.events)  # (proto equality: map order in JSON may differ)
    assert list(sealed.events) == sealed_events  # the input is left alone


@pytest.mark.parametrize("tamper", ["ciphertext", "nonce", "key_id"])
async def test_tampering_is_detected(tamper: str) -> None:
    c = codec(f"a:{KEY_A},b:{KEY_B}")
    [sealed] = await c.encode([Payload(data=b'"13800138000"')])
    data = bytearray(sealed.data)
    if tamper == "ciphertext":
        data[-20] ^= 1
    elif tamper == "nonce":
        data[0] ^= 1
    forged = Payload(metadata=dict(sealed.metadata), data=bytes(data))
    if tamper == "key_id":  # relabelled: another known key must not be tried on it
        forged.metadata[KEY_ID] = b"b"
    with pytest.raises(PayloadCodecError, match="failed authentication"):
        await c.decode([forged])


@pytest.mark.parametrize(("spec", "error"), [
    ("", "no keys"), ("a", "not 'id:base64key'"), (f"bad id:{KEY_A}", "not 'id:base64key'"),
    ("a:not*base64", "not valid base64"), (f"a:{base64.b64encode(b'short').decode()}", "5 bytes"),
    (f"a:{KEY_A},a:{KEY_B}", "appears twice")])
def test_keyring_spec_errors(spec: str, error: str) -> None:
    with pytest.raises(PayloadCodecError, match=error) as info:
        Keyring.parse(spec)
    assert KEY_A not in str(info.value) and KEY_B not in str(info.value)


def test_keyring_spec_takes_lines_and_comments() -> None:
    ring = Keyring.parse(f"# rotated 2026-05\nnew:{KEY_B}\n\nold:{KEY_A}, \n")
    assert list(ring.keys) == ["new", "old"] and ring.active_id == "new"


def test_embedded_default_generates_a_private_key_file_once(tmp_path: Path) -> None:
    home = tmp_path / "var"
    lazy = EncryptionCodec(KeySource(home=home))
    assert not (home / "payload.keys").exists()  # connecting alone writes nothing
    ring = lazy.keyring
    path = home / "payload.keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(None, None, home) == ring  # the next start reads the same key
    assert len(next(iter(ring.keys.values()))) == 32


def test_variable_wins_over_file_and_file_over_home(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"f:{KEY_B}\n")
    assert Keyring.load(f"v:{KEY_A}", keys_file, tmp_path).active_id == "v"
    assert Keyring.load(None, keys_file, tmp_path).active_id == "f"
    assert not (tmp_path / "payload.keys").exists()
    with pytest.raises(PayloadCodecError, match="cannot read TONGDAO_PAYLOAD_KEYS_FILE"):
        Keyring.load(None, tmp_path / "missing", tmp_path)


def test_key_source_from_the_environment(tmp_path: Path) -> None:
    source = KeySource.from_env({"TONGDAO_PAYLOAD_KEYS_FILE": str(tmp_path / "k"), "TONGDAO_HOME": "/srv/td"})
    assert source == KeySource(None, tmp_path / "k", Path("/srv/td"))
    assert KeySource.from_env({}) == KeySource(None, None, Path("var"))


def test_settings_carry_the_same_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TONGDAO_PAYLOAD_KEYS", f"a:{KEY_A}")
    monkeypatch.setenv("TONGDAO_PAYLOAD_KEYS_FILE", str(tmp_path / "k"))
    s = Settings()
    assert s.payload_keys is not None and s.payload_keys.get_secret_value() == f"a:{KEY_A}"
    assert KEY_A not in repr(s)
    assert s.payload_keys_file == tmp_path / "k"
    assert s.codec_origins == ["http://localhost:8233", "http://127.0.0.1:8233"]
    assert Settings(codec_cors_origins="https://temporal.example.com/, http://x:1").codec_origins == [
        "https://temporal.example.com", "http://x:1"]


def test_protocol_json_is_base64_both_ways() -> None:
    payload = Payload(metadata={"encoding": ENCODING, KEY_ID: b"a"}, data=os.urandom(40))
    body = payloads_to_json([payload])
    assert body["payloads"][0]["metadata"]["encoding"] == base64.b64encode(ENCODING).decode()
    assert payloads_from_json(body) == [payload]
    for bad in ({}, {"payloads": {}}, {"payloads": [{"metadata": {"encoding": "json/plain?"}}]},
                {"payloads": [{"data": 3}]}, {"payloads": ["x"]}):
        with pytest.raises(ValueError):
            payloads_from_json(bad)


# -- the codec-server routes ----------------------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)
    c = codec(f"b:{KEY_B},a:{KEY_A}")
    rt = SimpleNamespace(store=store, pool=None, settings=Settings(home=tmp_path),
                         client=SimpleNamespace(data_converter=data_converter(c)))
    tokens = {role: store.create_token(f"t-{role}", role, "test") for role in ("admin", "operator", "auditor")}
    return SimpleNamespace(http=TestClient(create_app(rt)), codec=c, tokens=tokens)  # type: ignore[arg-type]


def post(api: Any, op: str, payloads: list[Payload], role: str | None, **headers: str) -> Any:
    if role:
        headers["Authorization"] = f"Bearer {api.tokens[role]}"
    return api.http.post(f"/codec/{op}", json=payloads_to_json(payloads), headers=headers)


async def test_decode_needs_admin_or_auditor(api: Any) -> None:
    sealed = await api.codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"13800138000"')])
    for role in ("auditor", "admin"):
        answer = post(api, "decode", sealed, role, **{"X-Namespace": "default"})
        assert answer.status_code == 200
        assert [p.data for p in payloads_from_json(answer.json())] == [b'"13800138000"']
    assert post(api, "decode", sealed, "operator").status_code == 403
    assert post(api, "decode", sealed, None).status_code == 401
    assert api.http.post("/codec/decode", json=payloads_to_json(sealed),
                         headers={"Authorization": "Bearer td_nope"}).status_code == 401


async def test_encode_needs_admin_or_operator(api: Any) -> None:
    clear = [Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')]
    answer = post(api, "encode", clear, "operator")
    assert answer.status_code == 200
    [sealed] = payloads_from_json(answer.json())
    assert sealed.metadata[KEY_ID] == b"b"
    assert await api.codec.decode([sealed]) == clear
    assert post(api, "encode", clear, "auditor").status_code == 403


async def test_decode_errors_are_clear(api: Any) -> None:
    [foreign] = await codec(f"gone:{KEY_A}").encode([Payload(data=b"x")])
    answer = post(api, "decode", [foreign], "auditor")
    assert answer.status_code == 422 and "'gone'" in answer.json()["detail"]
    bad = api.http.post("/codec/decode", json={"payloads": [{"data": "%%"}]},
                        headers={"Authorization": f"Bearer {api.tokens['auditor']}"})
    assert bad.status_code == 400


def test_cors_only_for_the_web_ui_origin(api: Any) -> None:
    ui = "http://localhost:8233"
    pre = api.http.options("/codec/decode", headers={"Origin": ui, "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization,x-namespace"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ui
    assert "X-Namespace" in pre.headers["access-control-allow-headers"]
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    assert api.http.options("/codec/decode", headers={"Origin": "https://evil.example"}).status_code == 403
    refused = post(api, "decode", [], None, Origin=ui)  # the UI sees the 401, not an opaque CORS failure
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ui
    other = post(api, "decode", [], "auditor", Origin="https://evil.example")
    assert "access-control-allow-origin" not in other.headers


async def test_failure_messages_are_encrypted_like_payloads() -> None:
    """An error quoting a value (a platform's answer, a quarantine reason) is in the history only as
    ciphertext: the hub's converter moves message and stack trace into an encoded payload."""
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    converter = data_converter(codec(f"a:{KEY_A}"))
    failure = Failure()
    await converter.encode_failure(ApplicationError("refused: receiver 13812345678 at 文一西路 969 号"), failure)
    raw = failure.SerializeToString()
    assert failure.message == "Encoded failure"
    assert b"13812345678" not in raw and "文一西路".encode() not in raw
    back = await converter.decode_failure(failure)
    assert "13812345678" in str(back)
