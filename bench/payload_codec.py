"""What encrypting Temporal payloads costs: the hub's data converter with and without the AES-GCM codec.

A real-sized payload (the recorded Taobao trade fixture, as the order workflows carry it) is
converted and encoded, then decoded and converted back, ``--n`` times each way; the figures are
µs per payload round trip and the ratio codec/plain (the cost Temporal's own gRPC and persistence
dwarf: a workflow task is milliseconds).

    .venv/bin/python bench/payload_codec.py [--n 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.client import data_converter  # noqa: E402
from worker.codec import EncryptionCodec, Keyring  # noqa: E402


async def roundtrips(codec: EncryptionCodec | None, value: object, n: int) -> float:
    converter = data_converter(codec)
    started = time.perf_counter()
    for _ in range(n):
        payloads = await converter.encode([value])
        await converter.decode(payloads, [dict])
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    trade = json.loads((ROOT / "tests/fixtures/taobao_trade.json").read_text())
    size = len(json.dumps(trade).encode())
    codec = EncryptionCodec(Keyring.parse(f"bench:{base64.b64encode(os.urandom(32)).decode()}"))
    await roundtrips(codec, trade, 50)  # warm up
    plain = min([await roundtrips(None, trade, args.n) for _ in range(2)])
    sealed = min([await roundtrips(codec, trade, args.n) for _ in range(2)])
    print(f"payload: {size} bytes of JSON, {args.n} round trips (encode + decode) each")
    print(f"plain pydantic converter   {plain:8.1f} µs/round trip")
    print(f"with AES-GCM codec         {sealed:8.1f} µs/round trip")
    print(f"ratio codec/plain: {sealed / plain:.2f}x (+{sealed - plain:.1f} µs per payload)")


if __name__ == "__main__":
    asyncio.run(main())
