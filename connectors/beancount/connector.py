"""The local ledger: vouchers appended to a Beancount file, the hub's embedded default voucher target.

No network and no credentials: ``settings.path`` is the ledger file (the hub defaults it to
``{state dir}/ledger/tongdao.beancount``), created with its directory and a header on first use.
The file format, the locking and the idempotency are described in :mod:`connectors.beancount.ledger`.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date
from pathlib import Path

from pydantic import Field

from canonical import Voucher
from connectors.base import Connector, ConnectorSecrets, ConnectorSettings, CreateResult, VoucherTarget, connector_kind
from connectors.beancount.ledger import DEFAULT_OPEN_DATE, BeancountLedger, LedgerError, LockTimeout, check_ledger
from connectors.errors import ConfigurationError, InvalidRequestError, TransientError

PLATFORM = "beancount"


class BeancountSettings(ConnectorSettings):
    base_url: str = Field("", description="unused: the ledger is a local file")
    path: str = Field(min_length=1, description="the ledger file, e.g. /var/lib/tongdao/ledger/tongdao.beancount")
    operating_currency: str = Field("CNY", pattern=r"^[A-Z][A-Z0-9'._-]{0,22}[A-Z0-9]$")
    title: str = Field("Tongdao ledger", min_length=1)
    open_date: date = Field(DEFAULT_OPEN_DATE, description="date of the open directives; no voucher may be earlier")


@connector_kind("beancount", "Beancount ledger (local file)")
class BeancountConnector(Connector, VoucherTarget):
    """Capability 'vouchers' on a local Beancount file; ``timeout_s`` bounds the wait for the file lock."""

    Settings = BeancountSettings
    Secrets = ConnectorSecrets
    settings: BeancountSettings

    def __init__(self, name: str, settings: BeancountSettings, secrets: ConnectorSecrets) -> None:
        super().__init__(name, settings, secrets)
        self.ledger = BeancountLedger(settings.path, operating_currency=settings.operating_currency,
                                      title=settings.title, open_date=settings.open_date,
                                      lock_timeout_s=settings.timeout_s)

    @property
    def path(self) -> Path:
        return self.ledger.path

    async def post_voucher(self, voucher: Voucher) -> CreateResult:
        """Append one transaction; a voucher number already in the file answers ``created=False``."""
        try:
            outcome = await asyncio.to_thread(self.ledger.post, voucher)
        except LedgerError as exc:
            raise InvalidRequestError(str(exc), platform=PLATFORM) from exc
        except LockTimeout as exc:
            raise TransientError(str(exc), platform=PLATFORM) from exc
        except OSError as exc:  # disk full, permissions: may be fixed by a person, so retried
            raise TransientError(f"{self.path}: {exc}", platform=PLATFORM) from exc
        return CreateResult(external_id=f"{self.path.name}:{outcome.line}", number=voucher.number,
                            created=outcome.created)

    async def test(self) -> str:
        """The file (or its directory) is writable and, when it exists, Beancount loads it without errors."""
        return await asyncio.to_thread(self._test)

    def _test(self) -> str:
        path = self.path
        if path.exists():
            if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
                raise ConfigurationError(f"ledger {path} is not a readable and writable file", platform=PLATFORM)
        else:
            directory = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
            if directory is None or not os.access(directory, os.W_OK | os.X_OK):
                raise ConfigurationError(f"ledger {path} cannot be created: {directory} is not writable",
                                         platform=PLATFORM)
            return f"ledger {path} does not exist yet; it will be created on the first voucher"
        errors = check_ledger(path)
        if errors:
            shown = "; ".join(errors[:5]) + (f"; ... ({len(errors)} errors)" if len(errors) > 5 else "")
            raise ConfigurationError(f"ledger {path} does not check: {shown}", platform=PLATFORM)
        vouchers = self.ledger.known_vouchers()
        return f"ledger {path} is writable and checks clean ({len(vouchers)} vouchers)"
