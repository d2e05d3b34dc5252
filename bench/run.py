"""Run every benchmark in bench/ one after another, with small sizes, and summarise their figures.

Each benchmark compares against a baseline measured in the same run, so the ratios (not the
absolute rates) are what carries from one machine to another:

* ``expr_languages``  — CEL (through our adapter) vs the raw CEL binding, JMESPath and JSONata;
  ratio = fastest / this. Also ``MappingSpec.apply`` per order.
* ``temporal_sqlite`` — the embedded Temporal server with the SQLite defaults vs
  ``journal_mode=wal`` + ``synchronous=normal``; ratio = wal / default.
* ``shared_limit``    — a rate limiter counting in the hub store (across processes) vs in-process only;
* ``payload_codec``   — the hub's data converter with the AES-GCM payload codec vs without;
  ratio = codec / plain (µs per payload round trip).
* ``stock``           — the stock pool: a sale on one channel until every other channel's simulator
  shows it (p50/p99 at 1, 10, 100 changes/s) against one direct stock write (the floor); and a flash
  sale, 1,000 orders from 4 channels in 5 s for 100 units.
* ``order_timeline``  — one order's workflow history, event by event: a small demo runs in a
  throw-away state directory (its own Temporal server, simulators on loopback), then the history
  of its most recent completed order is read; figures are offsets from the workflow's start.

Nothing here touches the network: servers listen on 127.0.0.1 on free ports.

    .venv/bin/python bench/run.py            # small sizes (about 30 s on the 2-core box)
    .venv/bin/python bench/run.py --quick    # a fast pass (about 20 s)
    .venv/bin/python bench/run.py --only temporal_sqlite
    make bench ARGS=--quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


@dataclass
class Result:
    name: str
    ok: bool
    seconds: float
    summary: list[str] = field(default_factory=list)
    error: str = ""


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a benchmark script, echo its output as it is (the figures are its own), return it."""
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}: {tail}")
    return proc.stdout


# -- expr_languages -------------------------------------------------------------------------------
_ROW = re.compile(r"^\|\s*(?P<lib>[^|]+?)\s*\|\s*(?P<cond>[\d,]+)\s*\(\s*(?P<ratio>[\d.]+)x\)")
_APPLY = re.compile(r"^\|\s*(?P<spec>\w+)\s*\|\s*(?P<rate>[\d,]+)\s*\|\s*(?P<us>[\d.]+)\s*\|")


def expr_languages(quick: bool) -> list[str]:
    n, repeat = ("1000", "1") if quick else ("5000", "2")
    output = _run(["bench/expr_languages.py", "--n", n, "--repeat", repeat])
    summary = []
    for line in output.splitlines():
        if match := _ROW.match(line):
            slower = "the fastest" if float(match["ratio"]) <= 1.0 else f"{match['ratio']}x slower than the fastest"
            summary.append(f"{match['lib']}: condition {match['cond']}/s ({slower})")
        elif (match := _APPLY.match(line)) and match["spec"] == "taobao_order":
            summary.append(f"taobao_order apply: {match['rate']} orders/s ({match['us']} µs/order)")
    return summary


# -- temporal_sqlite ------------------------------------------------------------------------------
_RATE = re.compile(r"^(?P<label>.+?)\s+(?P<rate>[\d.]+) workflows/s")
_RATIO = re.compile(r"ratio wal/default: (?P<ratio>[\d.]+)x")


def temporal_sqlite(quick: bool) -> list[str]:
    workflows, concurrency = ("30", "10") if quick else ("100", "25")
    output = _run(["bench/temporal_sqlite.py", "--workflows", workflows, "--concurrency", concurrency])
    summary = [f"{m['label']}: {m['rate']} workflows/s" for m in map(_RATE.match, output.splitlines()) if m]
    if match := _RATIO.search(output):
        summary.append(f"wal/default: {match['ratio']}x")
    return summary


# -- payload_codec --------------------------------------------------------------------------------
_CODEC = re.compile(r"^(?P<label>plain pydantic converter|with AES-GCM codec)\s+(?P<us>[\d.]+) µs")
_CODEC_RATIO = re.compile(r"ratio codec/plain: (?P<ratio>[\d.]+)x \((?P<extra>[^)]*)\)")


def payload_codec(quick: bool) -> list[str]:
    output = _run(["bench/payload_codec.py", "--n", "1000" if quick else "5000"])
    summary = [f"{m['label']}: {m['us']} µs per payload round trip" for m in map(_CODEC.match, output.splitlines())
               if m]
    if match := _CODEC_RATIO.search(output):
        summary.append(f"codec/plain: {match['ratio']}x ({match['extra']})")
    return summary


# -- shared_limit ---------------------------------------------------------------------------------
_LIMIT = re.compile(r"^(?P<label>in-process limiter|shared through the store)\s+(?P<us>[\d.]+) µs")
_LIMIT_RATIO = re.compile(r"ratio shared/in-process: (?P<ratio>[\d.]+)x \((?P<extra>[^)]*)\)")


def shared_limit(quick: bool) -> list[str]:
    output = _run(["bench/shared_limit.py", "--n", "300" if quick else "2000"])
    summary = [f"{m['label']}: {m['us']} µs per request" for m in map(_LIMIT.match, output.splitlines()) if m]
    if match := _LIMIT_RATIO.search(output):
        summary.append(f"shared/in-process: {match['ratio']}x ({match['extra']})")
    return summary


# -- order_timeline -------------------------------------------------------------------------------
_EVENT = re.compile(r"^\s*(?P<offset>[\d.]+) s\s+(?P<event>\w+)")


def _free_port() -> int:
    from simulators.server import free_port

    return free_port()


def order_timeline(quick: bool) -> list[str]:
    """A small demo in a throw-away state directory, then the timeline of one of its orders.

    The bench starts that directory's Temporal server itself and the demo reuses it (the server
    belongs to the state directory, see worker/embedded.py), so the history can still be read
    once the demo has finished.
    """
    from worker.embedded import EmbeddedTemporal

    orders = "6" if quick else "20"
    with tempfile.TemporaryDirectory(prefix="tongdao-bench-") as home:
        server = EmbeddedTemporal(Path(home) / "temporal.db", port=_free_port(), headless=True)
        with server:
            env = {"TONGDAO_HOME": home, "TONGDAO_TEMPORAL_PORT": str(server.port),
                   "TONGDAO_TEMPORAL_UI_PORT": str(_free_port()), "TONGDAO_API_PORT": str(_free_port()),
                   "TONGDAO_TASK_QUEUE": "bench", "TONGDAO_LOG_LEVEL": "WARNING"}
            started = time.perf_counter()
            demo = _run(["-m", "hub.cli", "demo", "--orders", orders, "--seed", "7", "--json", "--timeout", "300"],
                        env=env)
            elapsed = time.perf_counter() - started
            figures = json.loads(demo.strip().splitlines()[-1])
            output = _run(["bench/order_timeline.py", "--address", server.address])
    events = [(float(m["offset"]), m["event"]) for m in map(_EVENT.match, output.splitlines()) if m]
    if not events:
        raise RuntimeError("order_timeline printed no events")
    total = events[-1][0] or 1e-9
    first_task = next((o for o, e in events if e == "workflow_task_started"), 0.0)
    activities = [o for o, e in events if e == "activity_task_completed"]
    good = int(figures.get("orders_created", 0)) - int(figures.get("orders_malformed", 0))
    summary = [f"demo: {figures.get('orders_created')} orders ({good} good) in {elapsed:.1f} s including start-up; "
               f"{good / elapsed:.2f} good orders/s",
               f"one order: {events[-1][1]} at {total:.3f} s after start, {len(events)} events"]
    summary.append(f"first workflow task picked up at {first_task:.3f} s "
                   f"({first_task / total:.0%} of the order's time)")
    if activities:
        summary.append(f"last activity completed at {activities[-1]:.3f} s ({activities[-1] / total:.0%})")
    return summary


# -- stock ----------------------------------------------------------------------------------------
def stock(quick: bool) -> list[str]:
    output = _run(["bench/stock.py", *(["--quick"] if quick else [])])
    summary = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("floor:"):
            summary.append(line)
        elif len(cells) >= 6 and cells[0].isdigit():
            summary.append(f"{cells[0]} changes/s: p50 {cells[2]} ms, p99 {cells[3]} ms ({cells[5]} the floor's p99)")
        elif line.startswith("flash sale:"):
            summary.append(line)
    return summary


BENCHES: dict[str, Callable[[bool], list[str]]] = {
    "expr_languages": expr_languages,
    "temporal_sqlite": temporal_sqlite,
    "order_timeline": order_timeline,
    "payload_codec": payload_codec,
    "shared_limit": shared_limit,
    "stock": stock,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     epilog="Example: .venv/bin/python bench/run.py --quick")
    parser.add_argument("--quick", action="store_true", help="smallest sizes: a fast pass to see that all run")
    parser.add_argument("--only", action="append", choices=sorted(BENCHES), help="run only this one (repeatable)")
    args = parser.parse_args(argv)
    results: list[Result] = []
    for name, bench in BENCHES.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name}{' (quick)' if args.quick else ''} " + "=" * max(0, 70 - len(name)), flush=True)
        started = time.perf_counter()
        try:
            summary = bench(args.quick)
            results.append(Result(name, True, time.perf_counter() - started, summary))
        except Exception as exc:  # one broken bench must not hide the others' figures
            results.append(Result(name, False, time.perf_counter() - started, error=str(exc)))
    print("\n=== summary " + "=" * 68)
    for result in results:
        print(f"{result.name} ({result.seconds:.0f} s): {'ok' if result.ok else 'FAILED: ' + result.error}")
        for line in result.summary:
            print(f"  - {line}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
