"""Connecting to Temporal with the pydantic data converter (models in, models out) and payload encryption.

The worker, the API and the CLI all connect here, so they all encrypt and decrypt with the same
keyring (:mod:`worker.codec`): a payload one of them writes, the others can read.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Final

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from worker.codec import EncryptionCodec


class _FromEnvironment:
    def __repr__(self) -> str:
        return "FROM_ENV"


FROM_ENV: Final = _FromEnvironment()
"""``connect``'s default codec: an :class:`EncryptionCodec` with the keys the ``TONGDAO_*`` environment names."""


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The pydantic converter, with ``codec`` on the payloads (None: clear payloads, e.g. to inspect raw history)."""
    if codec is None:
        return pydantic_data_converter
    # failures' messages and stack traces travel as an encoded payload too: an error that quotes a
    # value (a platform's answer, a quarantine reason) is as encrypted in the history as the data
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


async def connect(address: str, namespace: str = "default", wait_s: float = 30.0,
                  codec: PayloadCodec | _FromEnvironment | None = FROM_ENV) -> Client:
    """Connect, retrying while a just-started server finishes booting.

    ``codec`` defaults to the keyring from the environment (what the CLI uses); the hub passes the
    one built from its settings; ``None`` connects without encryption (tests reading raw history).
    """
    converter = data_converter(EncryptionCodec() if isinstance(codec, _FromEnvironment) else codec)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return await Client.connect(address, namespace=namespace, data_converter=converter)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)
