"""Signing in to the codec server for the Temporal Web UI: an HttpOnly cookie that the UI's codec
requests carry (the UI sends no Authorization header), admitted for admin and auditor tokens only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient

from hub.api import create_app
from hub.settings import Settings
from store import open_store

UI = "http://localhost:8233"


def make(tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)
    rt = SimpleNamespace(store=store, client=None, pool=None,
                         settings=Settings(home=tmp_path, codec_cors_origins=UI))
    tokens = {role: store.create_token(f"t-{role}", role, "test") for role in ("admin", "operator", "auditor")}
    return TestClient(create_app(rt), base_url="https://testserver"), tokens  # type: ignore[arg-type]


def test_an_auditor_signs_in_and_the_cookie_carries_the_codec_calls(tmp_path: Path) -> None:
    client, tokens = make(tmp_path)
    page = client.get("/codec-login")
    assert page.status_code == 200 and 'type="password"' in page.text
    refused = client.post("/codec-login", data={"token": tokens["operator"]})
    assert refused.status_code == 401 and "tongdao_codec" not in refused.headers.get("set-cookie", "")
    assert client.post("/codec-login", data={"token": "nope"}).status_code == 401

    signed = client.post("/codec-login", data={"token": tokens["auditor"]})
    assert signed.status_code == 200 and "/codec" in signed.text
    cookie = signed.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=none", "Path=/codec"):
        assert attribute.lower() in cookie.lower(), attribute
    # the Web UI's request: the cookie, no Authorization header, from the UI's origin
    answer = client.post("/codec/decode", json={"payloads": []}, headers={"Origin": UI})
    assert answer.status_code == 503  # past authentication: only Temporal is missing in this test
    assert answer.headers["access-control-allow-origin"] == UI
    assert answer.headers["access-control-allow-credentials"] == "true"
    # an operator may encode but not read: the cookie of an auditor does not encode
    assert client.post("/codec/encode", json={"payloads": []}, headers={"Origin": UI}).status_code == 403

    client.post("/codec-logout")
    client.cookies.clear()
    assert client.post("/codec/decode", json={"payloads": []}, headers={"Origin": UI}).status_code == 401
