"""The demo path, end to end: `tongdao demo` logic on its own embedded Temporal server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.demo import run_demo
from hub.settings import Settings
from simulators.server import free_port

SUMMARY_KEYS = {"orders_created", "orders_malformed", "wms_outbound_orders", "wms_duplicates", "erp_sales_orders",
                "erp_duplicates", "tracking_written_back", "quarantined", "elapsed_s", "temporal_db"}


def demo_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "var", temporal_port=free_port(), temporal_ui_port=free_port(),
                    api_port=free_port(), log_format="console", log_level="WARNING")


async def test_demo_ends_with_every_good_order_everywhere_once(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path)
    summary = await run_demo(settings, orders=30, seed=5, timeout_s=180, show_progress=False)
    assert SUMMARY_KEYS <= set(summary)
    good = summary["orders_created"] - summary["orders_malformed"]
    assert summary["orders_created"] == 30 and summary["orders_malformed"] >= 2
    assert summary["wms_outbound_orders"] == good and summary["wms_duplicates"] == 0
    assert summary["erp_sales_orders"] == good and summary["erp_duplicates"] == 0
    assert summary["tracking_written_back"] == good
    assert summary["quarantined"] == summary["orders_malformed"]
    assert summary["ok"] is True
    assert Path(summary["temporal_db"]).exists()  # the history is kept for inspection


@pytest.mark.timeout(240)
def test_demo_cli_prints_json_summary_last(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path)
    env = {"TONGDAO_HOME": str(settings.home), "TONGDAO_TEMPORAL_PORT": str(settings.temporal_port),
           "TONGDAO_TEMPORAL_UI_PORT": str(settings.temporal_ui_port), "TONGDAO_API_PORT": str(settings.api_port),
           "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "demo", "--orders", "10", "--json"], env=env,
                          capture_output=True, text=True, timeout=220, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert SUMMARY_KEYS <= set(summary) and summary["ok"] is True


async def test_demo_under_chaos_still_agrees(tmp_path: Path) -> None:
    """5xx, throttling with Retry-After, lost ERP replies, repeated WMS confirmations and repeated
    trades in pages: every retry path is taken, and still nothing is lost and nothing doubled."""
    summary = await run_demo(demo_settings(tmp_path), orders=40, seed=9, timeout_s=240, show_progress=False,
                             chaos=True)
    injected = summary["faults_injected"]
    assert sum(injected["taobao"].values()) > 0 and sum(injected["erp"].values()) > 0
    assert sum(injected["wms"].values()) > 0
    good = summary["orders_created"] - summary["orders_malformed"]
    assert summary["wms_outbound_orders"] == summary["erp_sales_orders"] == summary["tracking_written_back"] == good
    assert summary["wms_duplicates"] == summary["erp_duplicates"] == 0
    assert summary["ok"] is True


async def test_a_second_demo_run_on_the_same_home_works(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path)
    first = await run_demo(settings, orders=10, seed=1, timeout_s=120, show_progress=False)
    second = await run_demo(settings, orders=10, seed=2, timeout_s=120, show_progress=False)
    assert first["ok"] and second["ok"]
