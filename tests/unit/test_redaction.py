"""The one redaction policy (``canonical.redact``) and its users: logs, validation problems, and a
whole demo run whose captured logs must hold no buyer phone and no credential."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from canonical import Order, validate_order
from canonical.redact import SECRET_MASK, is_personal, is_secret, mask, redact, redact_value, scrub_text, words
from hub.logging import ScrubbingFormatter, configure
from hub.logging import redact as redact_processor


@pytest.mark.parametrize("key", [
    "secret", "app_secret", "appSecret", "client_secret", "password", "passwd", "token", "access_token",
    "accessToken", "refresh_token", "session", "sessionKey", "session_key", "sign", "signature", "Authorization",
    "cookie", "Set-Cookie", "X-Auth-Token", "api_key", "apiKey", "private_key", "credentials", "password_hash",
])
def test_secret_keys(key: str) -> None:
    assert is_secret(key) and not is_personal(key)
    assert redact_value(key, "value-1234") == SECRET_MASK


@pytest.mark.parametrize("key", [
    # whole words only: a count, a method or a word that merely contains "sign"/"token" is not a secret
    "signalled", "design", "assignee", "signal", "tokenizer", "sign_method", "token_type", "token_name",
    "expires_in", "order_key", "app_key", "key", "idempotency_key", "connector", "flow", "workflow_id",
    "sessions_seen_count_x",
])
def test_not_secret_keys(key: str) -> None:
    assert not is_secret(key), words(key)


@pytest.mark.parametrize("key", [
    "name", "receiver_name", "receiverName", "buyer_name", "buyer_nick", "nick", "mobile", "receiver_mobile",
    "phone", "tel", "post_tel", "address", "receiver_address", "street", "detail", "email", "buyerEmail",
    "id_card", "idCard", "receiver", "recipient", "consignee",
])
def test_personal_keys(key: str) -> None:
    assert is_personal(key) and not is_secret(key)


@pytest.mark.parametrize("key", [
    "connector_name", "flow_name", "shop_name", "spec_name", "nickel", "telemetry", "mail_no", "order_key",
    "external_id", "status", "total", "signalled",
])
def test_not_personal_keys(key: str) -> None:
    assert not is_personal(key), words(key)


def test_masking_keeps_three_and_two() -> None:
    assert mask("13812345678") == "138****78"
    assert mask("王小明") == "****" and mask("") == "****" and mask(12345678901) == "123****01"


def test_redaction_is_recursive_and_leaves_the_rest_alone() -> None:
    doc = {
        "signalled": 3, "design": "x", "assignee": "ops",
        "order": {"receiver": {"name": "王小明", "mobile": "13812345678",
                               "address": {"province": "浙江省", "street": "文一西路969号"}},
                  "buyer_nick": "tb12345678", "lines": [{"sku": "TD-SKU-0001", "quantity": 2}]},
        "connectors": [{"name": "shop-a", "settings": {"session": "sess-1", "app_key": "123"},
                        "secrets": {"app_secret": "s3"}}],
        "note": "call 138-1234-5678 please", "empty_phone": "", "mobile": None,
    }
    out = redact(doc)
    assert out["signalled"] == 3 and out["design"] == "x" and out["assignee"] == "ops"
    receiver = out["order"]["receiver"]
    assert receiver == {"name": "****", "mobile": "138****78",
                        "address": {"province": "****", "street": "文一西****9号"}}
    assert out["order"]["buyer_nick"] == "tb1****78"
    assert out["order"]["lines"] == [{"sku": "TD-SKU-0001", "quantity": 2}]
    assert out["connectors"][0]["settings"] == {"session": SECRET_MASK, "app_key": "123"}
    assert out["connectors"][0]["secrets"] == SECRET_MASK
    assert out["note"] == "call 138****78 please"
    assert out["empty_phone"] == "" and out["mobile"] is None  # "no phone" is what an operator must see
    assert doc["order"]["receiver"]["mobile"] == "13812345678"  # a copy: the caller's data is untouched


def test_pydantic_models_are_redacted_as_their_dump() -> None:
    order = Order.model_validate({
        "channel": "taobao", "shop": "s", "external_id": "1", "status": "paid",
        "created_at": "2026-11-11T00:00:00+08:00", "modified_at": "2026-11-11T00:00:00+08:00",
        "item_total": "1", "total": "1",
        "receiver": {"name": "张三丰", "mobile": "13800138000", "address": {"province": "浙江省", "street": "x路1号"}},
        "lines": [{"line_id": "1", "sku": "A", "quantity": 1, "unit_price": "1", "total": "1"}],
    })
    text = json.dumps(redact({"order": order}), ensure_ascii=False)
    assert "13800138000" not in text and "张三丰" not in text and "138****00" in text


def test_free_text_scrubbing() -> None:
    url = "Client error for url 'http://h/router/rest?app_key=1&session=s-123&sign=ABCDEF&sign_method=md5'"
    assert scrub_text(url) == ("Client error for url 'http://h/router/rest?app_key=1&session=********&sign=********"
                               "&sign_method=md5'")
    assert scrub_text("Authorization: Bearer td_abc.def") == "Authorization: Bearer ********"
    assert scrub_text('{"app_secret": "zz", "n": 1}') == '{"app_secret": ********, "n": 1}'
    assert scrub_text("+86 138 1234 5678 / 8613812345678") == "138****78 / 138****78"
    # ids, amounts, times and prose labels are left alone
    for text in ("tid 3912345678901234567", "total 13812345678.50", "at 2026-11-11T13:45:00+08:00",
                 "secrets: TONGDAO_SECRET_KEY is wrong", "signalled=3", "receiver.mobile: not a valid mobile"):
        assert scrub_text(text) == text


def test_validation_masks_like_the_policy() -> None:
    order = Order.model_validate({
        "channel": "taobao", "shop": "s", "external_id": "1", "status": "paid",
        "created_at": "2026-11-11T00:00:00+08:00", "modified_at": "2026-11-11T00:00:00+08:00",
        "item_total": "1", "total": "1",
        "receiver": {"name": "张三丰", "mobile": "1381234567X", "address": {"province": "浙江省", "city": "杭州市",
                                                                          "street": "x路1号"}},
        "lines": [{"line_id": "1", "sku": "A", "quantity": 1, "unit_price": "1", "total": "1"}],
    })
    problems = {p.field: p for p in validate_order(order)}
    assert problems["receiver.mobile"].value == mask("1381234567X") == "138****7X"


def test_the_mapping_engine_masks_the_same_way() -> None:
    """mappings/ keeps its own copy of the mask for now; they must not drift apart."""
    from mappings.engine import mask as engine_mask

    for value in ("13812345678", "王小明同学", "abc", "", "138-1234-5678"):
        assert engine_mask(value) == mask(value)


def test_log_processor_nested_text_and_exc_info_untouched() -> None:
    exc_info = (ValueError, ValueError("x"), None)
    event = redact_processor(None, "info", {
        "event": "sent 13812345678", "app_secret": "s", "signalled": 4, "exc_info": exc_info,
        "payload": {"receiver_mobile": "13812345678", "inner": [{"password": "p"}]}, "level": "info",
    })
    assert event["event"] == "sent 138****78" and event["app_secret"] == SECRET_MASK and event["signalled"] == 4
    assert event["payload"] == {"receiver_mobile": "138****78", "inner": [{"password": SECRET_MASK}]}
    assert event["exc_info"] is exc_info and event["level"] == "info"


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure("json", "INFO")
    yield
    configure("console", "WARNING")  # as tests/conftest.py left it


def test_json_logs_end_to_end(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    log = structlog.get_logger("test")
    log.info("ingest.window", connector="shop-a", signalled=3, started=2,
             request={"session": "sess-xyz", "receiver": {"mobile": "13912345678"}})
    try:
        raise RuntimeError("upstream said: receiver 13912345678 rejected, sign=CAFEBABE")
    except RuntimeError:
        log.exception("push.failed")
    text = capsys.readouterr().err
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["signalled"] == 3 and lines[0]["request"]["session"] == SECRET_MASK
    assert "13912345678" not in text and "sess-xyz" not in text and "CAFEBABE" not in text
    assert "139****78" in lines[1]["exception"]


def test_stdlib_log_lines_are_scrubbed() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.scrub")
    logger.addHandler(handler)
    try:
        logger.warning("activity failed for %s: token=%s", "13812345678", "abc")
    finally:
        logger.removeHandler(handler)
    assert buffer.getvalue().strip() == "WARNING test.scrub: activity failed for 138****78: token=********"


# -- a whole demo run: nothing personal, nothing secret in the logs ---------------------------------
@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_demo_logs_hold_no_phone_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import hub.demo as demo
    from hub.settings import Settings
    from simulators.server import free_port

    systems: list[Any] = []

    class RecordedSystems(demo.DemoSystems):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            systems.append(self)

    monkeypatch.setattr(demo, "DemoSystems", RecordedSystems)
    # everything the hub logs, as production writes it: JSON, down to debug
    monkeypatch.setattr(demo, "configure", lambda *_: configure("json", "DEBUG"))
    stdlib = io.StringIO()
    handler = logging.StreamHandler(stdlib)
    handler.setFormatter(ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    settings = Settings(home=tmp_path / "var", temporal_port=free_port(), temporal_ui_port=free_port(),
                        api_port=free_port(), log_format="json", log_level="DEBUG")
    old_umask = os.umask(0o077)  # as `tongdao` sets it at start-up
    try:
        summary = await demo.run_demo(settings, orders=6, seed=11, timeout_s=90, show_progress=False,
                                      channels=())
    finally:
        os.umask(old_umask)
        root.removeHandler(handler)
        configure("console", "WARNING")
    captured = capsys.readouterr()
    logs = captured.err + captured.out + stdlib.getvalue()
    assert summary["ok"] is True, summary
    assert '"event"' in logs and "order." in logs  # the hub did log, as JSON

    (sim,) = systems
    trades = [t for session in sim.shops for t in sim.taobao.orders(session)]
    phones = {t[k] for t in trades for k in ("receiver_mobile", "receiver_phone") if len(t.get(k) or "") >= 7}
    assert len(phones) >= 6
    secrets = {demo.APP_SECRET, demo.WMS_SECRET, demo.ERP_PASSWORD, *sim.shops}
    Path(os.environ.get("TD_REDACTION_LOGS", os.devnull)).write_text(logs)  # to look at them by hand
    leaked = sorted(value for value in phones | secrets if value in logs)
    assert not leaked, f"found in the logs: {leaked}"
    # nor at rest: the Temporal database (payloads encrypted), the hub store (personal fields and
    # secrets sealed) and every other file of the state directory
    stored = b"".join(p.read_bytes() for p in settings.home.rglob("*") if p.is_file())  # the ledger too
    at_rest = sorted(value for value in phones | secrets if value.encode() in stored)
    assert not at_rest, f"found in the state directory: {at_rest}"

    modes = {p.name: p.stat().st_mode & 0o777 for p in settings.home.iterdir()}
    assert settings.home.stat().st_mode & 0o777 == 0o700
    assert {"tongdao.db", "secret.key", "temporal.db", "temporal.log"} <= set(modes)  # temporal.json: gone at stop
    assert {name: mode for name, mode in modes.items()
            if mode != (0o700 if (settings.home / name).is_dir() else 0o600)} == {}
    ledger_files = list((settings.home / "ledger").glob("*.beancount"))
    assert ledger_files and all(p.stat().st_mode & 0o777 == 0o600 for p in ledger_files)
