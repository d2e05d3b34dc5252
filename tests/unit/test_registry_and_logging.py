"""Connector registration files and log redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import load_kinds
from connectors.errors import ConfigurationError
from connectors.registry import Registration, instantiate, load_registration, register
from hub.logging import redact
from store import open_store


def test_shipped_kinds_are_discovered() -> None:
    kinds = load_kinds()
    assert {"taobao", "qimen", "kingdee"} <= set(kinds)
    assert {"orders", "shipments"} <= kinds["taobao"].capabilities
    assert "outbound_orders" in kinds["qimen"].capabilities
    assert "sales_documents" in kinds["kingdee"].capabilities


def test_registration_round_trip_masks_secrets(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: shop-a\nkind: taobao\nsettings:\n  base_url: http://127.0.0.1:1/router/rest\n"
        "  app_key: '123'\n  session: sess-value\n  sign_method: md5\nsecrets:\n  app_secret: very-secret\n"
    )
    reg = load_registration(path)
    assert register(store, reg, "alice") is True
    connector = instantiate(store, "shop-a")
    shown = str(connector.describe())
    assert "very-secret" not in shown and "********" in shown


def test_registration_errors_name_the_field(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/t.db", None, tmp_path)
    reg = Registration(name="shop-a", kind="taobao", settings={"base_url": "x", "app_key": "1",
                                                                "sign_method": "sha1"}, secrets={})
    with pytest.raises(ConfigurationError) as info:
        register(store, reg, "alice")
    assert "settings.sign_method" in str(info.value)
    with pytest.raises(ConfigurationError, match="unknown connector kind"):
        register(store, Registration(name="x", kind="nope"), "alice")
    with pytest.raises(ValueError):
        Registration(name="Bad Name", kind="taobao")


def test_log_redaction() -> None:
    event = redact(None, "info", {"event": "x", "app_secret": "s", "password": "p", "receiver_mobile": "13800138000",
                                  "order_key": "taobao:a:1", "signalled": 2,
                                  "settings": {"session": "sess", "sign_method": "md5"}})
    assert event["app_secret"] == "********" and event["password"] == "********"
    assert event["receiver_mobile"] == "138****00" and event["order_key"] == "taobao:a:1"
    assert event["signalled"] == 2  # a count of signalled workflows, not a signature
    assert event["settings"] == {"session": "********", "sign_method": "md5"}  # nested too


def test_a_session_given_under_settings_is_stored_as_a_secret(tmp_path) -> None:  # noqa: ANN001
    from connectors.registry import Registration, register
    from store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)
    register(store, Registration(name="shop", kind="taobao", settings={
        "base_url": "http://127.0.0.1:9/router/rest", "app_key": "1", "session": "6100-the-session-key"},
        secrets={"app_secret": "s3cret"}), "test")
    row = store.get_connector("shop")
    assert "session" not in row.settings
    assert store.connector_secrets(row)["session"] == "6100-the-session-key"
    assert b"6100-the-session-key" not in (tmp_path / "hub.db").read_bytes()


def test_a_connector_hides_every_secret_it_holds_in_error_text() -> None:
    from connectors.registry import Registration

    reg = Registration(name="jd-shop", kind="jd", settings={"app_key": "k"},
                       secrets={"app_secret": "app-secret-value", "access_token": "token-value-123"})
    connector = reg.validate_kind().from_config(reg.name, reg.settings, reg.secrets)
    text = "sign failed for app-secret-value with token-value-123 and extra-value; abc"
    assert connector.redact_secrets(text, "extra-value", "abc") == "sign failed for *** with *** and ***; abc"


async def test_closing_a_connector_closes_every_http_client_it_holds() -> None:
    from connectors.http import ApiClient
    from connectors.registry import Registration

    reg = Registration(name="amz", kind="amazon", settings={"marketplace_ids": ["ATVPDKIKX0DER"]},
                       secrets={"client_id": "c", "client_secret": "s", "refresh_token": "r"})
    connector = reg.validate_kind().from_config(reg.name, reg.settings, reg.secrets)
    clients = [c for v in vars(connector).values() for c in (v.values() if isinstance(v, dict) else (v,))
               if isinstance(c, ApiClient)]
    assert len(clients) >= 2
    for client in clients:
        _ = client.client  # opened
    await connector.aclose()
    assert all(client._client is None for client in clients)
