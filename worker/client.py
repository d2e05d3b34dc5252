"""Connecting to Temporal with the pydantic data converter (models in, models out)."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter


async def connect(address: str, namespace: str = "default", wait_s: float = 30.0) -> Client:
    """Connect, retrying while a just-started server finishes booting."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)
