"""The CLI answers bad input with one ``error:`` line and exit 1, never a traceback.

Each case here once ended in a traceback (or, for ``flows pause``, in a second, spurious
``error: 1``): a binary file, a payload that is not JSON, ``--context`` without ``=``, a JSON list
where an object is expected, a dead endpoint, a malformed or wrong ``TONGDAO_SECRET_KEY``...
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner, Result

import hub.cli as cli
from hub.cli import app
from hub.settings import get_settings
from simulators.server import free_port

ROOT = Path(__file__).parents[2]
runner = CliRunner()
DEAD = "name: dead\nkind: taobao\nsettings: {base_url: 'http://127.0.0.1:9/router/rest', app_key: '123', " \
       "session: sess-dead-1, sign_method: md5}\nsecrets: {app_secret: dead-secret-9}\n"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TONGDAO_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("TONGDAO_TEMPORAL_PORT", str(free_port()))  # nothing listens there: Temporal is down
    monkeypatch.delenv("TONGDAO_SECRET_KEY", raising=False)
    monkeypatch.delenv("TONGDAO_TEMPORAL_ADDRESS", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "random.bin"
    path.write_bytes(bytes(range(256)) * 4 + os.urandom(512))
    return path


def invoke(*args: str) -> Result:
    get_settings.cache_clear()  # environment changes between calls take effect
    return runner.invoke(app, list(args))


def one_error(result: Result, *needles: str) -> str:
    """Exit 1, no exception escaped, stderr is exactly one ``error:`` line containing every needle."""
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "╭" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def register_dead(tmp_path: Path) -> None:
    reg = tmp_path / "dead.yaml"
    reg.write_text(DEAD)
    result = invoke("connectors", "add", "--file", str(reg))
    assert result.exit_code == 0, result.stderr


# -- files that are not what they should be ---------------------------------------------------------
def test_binary_registration_file(binary: Path) -> None:
    one_error(invoke("connectors", "add", "--file", str(binary)), str(binary), "not a UTF-8 text")


def test_binary_flow_file(binary: Path) -> None:
    one_error(invoke("flows", "add", "--file", str(binary)), str(binary), "not a UTF-8 text")


def test_registration_file_that_is_a_yaml_list_or_broken(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    one_error(invoke("connectors", "add", "--file", str(listed)), str(listed))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [\n")
    one_error(invoke("connectors", "add", "--file", str(broken)), str(broken))


def test_preview_payload_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json {")
    one_error(invoke("mappings", "preview", "taobao_order", str(bad)), str(bad), "not valid JSON", "line 1")


def test_preview_payload_binary_or_a_list(tmp_path: Path, binary: Path) -> None:
    one_error(invoke("mappings", "preview", "taobao_order", str(binary)), "not a UTF-8 text")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    one_error(invoke("mappings", "preview", "taobao_order", str(listed)), "must be a JSON object", "list")


@pytest.mark.parametrize("option, value", [("--context", "shop"), ("--context", "=x"), ("--xref", "sku")])
def test_preview_key_value_options_without_equals(option: str, value: str) -> None:
    fixture = str(ROOT / "tests/fixtures/taobao_trade.json")
    one_error(invoke("mappings", "preview", "taobao_order", fixture, option, value), option, "KEY=VALUE")


def test_preview_xref_file_missing_or_a_list(tmp_path: Path) -> None:
    fixture = str(ROOT / "tests/fixtures/taobao_trade.json")
    one_error(invoke("mappings", "preview", "taobao_order", fixture, "--xref", f"sku={tmp_path}/nope.json"),
              "no such file")
    listed = tmp_path / "list.json"
    listed.write_text('["a"]')
    one_error(invoke("mappings", "preview", "taobao_order", fixture, "--xref", f"sku={listed}"), "JSON object")


def test_preview_help_example_is_real() -> None:
    """The example in ``--help`` runs as written, from the repository root."""
    doc = cli.mappings_preview.__doc__ or ""
    example = " ".join(doc.split("Example:", 1)[1].split()).strip("` ")
    args = example.removeprefix("tongdao ").split()
    for arg in args:
        path = arg.split("=", 1)[-1]
        if "/" in path:
            assert (ROOT / path).is_file(), path
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        result = invoke(*args)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["shop"] == "tmall-main"


@pytest.mark.parametrize("content, needle", [
    ("[1, 2]", "must be a JSON object"), ("{nope", "not valid JSON"), ('{"a": {"b": 1}}', "strings or numbers"),
])
def test_xref_load_wrong_json(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    one_error(invoke("xref", "load", "sku", str(path)), needle)


def test_xref_load_binary(binary: Path) -> None:
    one_error(invoke("xref", "load", "sku", str(binary)), "not a UTF-8 text")


# -- endpoints and keys -----------------------------------------------------------------------------
def test_pull_from_a_dead_endpoint(tmp_path: Path) -> None:
    register_dead(tmp_path)
    line = one_error(invoke("connectors", "pull", "dead", "--since", "2026-11-11T00:00:00+08:00"),
                     "dead: cannot reach http://127.0.0.1:9/router/rest")
    assert "dead-secret-9" not in line and "sess-dead-1" not in line
    one_error(invoke("connectors", "test", "dead"), "cannot reach http://127.0.0.1:9")


def test_pull_unknown_connector_or_mapping(tmp_path: Path) -> None:
    one_error(invoke("connectors", "pull", "nope", "--since", "2026-11-11T00:00:00Z"), "no connector named 'nope'")
    register_dead(tmp_path)
    one_error(invoke("connectors", "pull", "dead", "--since", "2026-11-11T00:00:00Z", "--mapping", "nope"),
              "no mapping spec named 'nope'")


@pytest.mark.parametrize("key", ["not-a-key", "x" * 44])
def test_malformed_secret_key(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("TONGDAO_SECRET_KEY", key)
    for args in (["connectors", "list"], ["tasks", "list"], ["connectors", "show", "x"]):
        line = one_error(invoke(*args), "TONGDAO_SECRET_KEY is not a Fernet key", "Fernet.generate_key()")
        assert key not in line


def test_a_valid_key_that_did_not_seal_the_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_dead(tmp_path)  # sealed with var/secret.key
    other = Fernet.generate_key().decode()
    monkeypatch.setenv("TONGDAO_SECRET_KEY", other)
    for args in (["connectors", "show", "dead"], ["connectors", "test", "dead"],
                 ["connectors", "pull", "dead", "--since", "2026-11-11T00:00:00Z"]):
        line = one_error(invoke(*args), "dead: cannot decrypt connector secrets",
                         "TONGDAO_SECRET_KEY is not the key they were sealed with")
        assert other not in line
    assert invoke("connectors", "list").exit_code == 0  # what needs no secret still works


def test_a_corrupt_secret_key_file(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "secret.key").write_text("garbage\n")
    one_error(invoke("connectors", "list"), f"{home / 'secret.key'} is not a Fernet key")


def test_bad_setting_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGDAO_API_PORT", "abc")
    one_error(invoke("connectors", "list"), "TONGDAO_API_PORT")


def test_state_directory_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("TONGDAO_HOME", str(afile))
    one_error(invoke("connectors", "list"), "state directory", "TONGDAO_HOME")


# -- Temporal down: one error line, not two ---------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["flows", "pause", "x"], ["flows", "resume", "x"], ["flows", "run-now", "x"],
    ["flows", "backfill", "x", "--since", "2026-11-11T00:00:00Z"],
    ["orders", "reconcile", "x", "--since", "2026-11-11T00:00:00Z"], ["quarantine", "replay", "3"],
])
def test_temporal_down_is_one_line(args: list[str]) -> None:
    line = one_error(invoke(*args), "is not reachable", "tongdao up")
    assert "error: 1" not in line


# -- other obvious mistakes -------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["tasks", "list", "--older-than", "2x"], "--older-than"),
    (["tasks", "list", "--older-than", "PXD"], "--older-than"),
    (["connectors", "pull", "x", "--since", "yesterday"], "not ISO 8601"),
    (["connectors", "pull", "x", "--since", "2026-11-12T00:00:00Z", "--until", "2026-11-11T00:00:00Z"], "after"),
    (["flows", "backfill", "x", "--since", "2026-11-11"], "no time zone"),
    (["connectors", "show", "nope"], "no connector named 'nope'"),
    (["connectors", "test", "nope"], "no connector named 'nope'"),
    (["connectors", "remove", "nope"], "no connector named 'nope'"),
    (["flows", "show", "nope"], "no flow named 'nope'"),
    (["flows", "remove", "nope"], "no flow named 'nope'"),
    (["flows", "status", "nope"], "no flow named 'nope'"),
    (["tasks", "close", "99"], "no task 99"),
    (["tokens", "revoke", "nope"], "no active token"),
    (["mappings", "preview", "nope", str(ROOT / "tests/fixtures/taobao_trade.json")], "no mapping spec"),
    (["up", "--role", "boss"], "--role"),
])
def test_obvious_mistakes(args: list[str], needle: str) -> None:
    one_error(invoke(*args), needle)


def test_iso_duration_is_accepted_for_older_than() -> None:
    result = invoke("tasks", "list", "--older-than", "P1D", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_schema_export_into_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_error(invoke("schema", "export", "--out", str(afile / "schema")), "--out")


# -- the last line of defence -----------------------------------------------------------------------
def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["tongdao", *args])
    old = os.umask(0o022)
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        os.umask(old)
    return 0


def test_main_turns_an_unexpected_error_into_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("the store broke\nwhile calling 13812345678 with password=hunter2")

    monkeypatch.setattr(cli, "_store", broken)
    assert run_main(monkeypatch, "connectors", "list") == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: RuntimeError: the store broke while calling 138****78")
    assert "hunter2" not in err and "TONGDAO_DEBUG=1" in err
    monkeypatch.setenv("TONGDAO_DEBUG", "1")
    with pytest.raises(RuntimeError, match="the store broke"):
        run_main(monkeypatch, "connectors", "list")


def test_error_lines_are_never_wrapped_nor_read_as_markup(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "x" * 150 + "[bold]y[/bold]"
    assert run_main(monkeypatch, "flows", "show", long_name) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "[bold]y[/bold]" in err
    assert re.match(r"^error: no flow named 'x+\[bold\]y\[/bold\]'$", err.strip())
