"""The fulfilment activities on a real store and a real Beancount ledger: the shipment voucher is
posted once per order, a cancellation after posting books its reversal once, the ledger checks;
a notification key is sent once; a refused ERP outbound is non-retryable (the order parks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from canonical import Order
from connectors.beancount import check_ledger
from connectors.registry import ConnectorPool, Registration, register
from store import open_store
from workflows.fulfilment.activities import FulfilmentActivities
from workflows.fulfilment.models import OutboundInput, VoucherInput

FIXTURE = Path(__file__).parents[1] / "fixtures"


def order() -> Order:
    from mappings import DictLookups, load_spec

    raw = json.loads((FIXTURE / "taobao_trade.json").read_text())
    raw = raw.get("trade_fullinfo_get_response", {}).get("trade", raw)
    result = load_spec("taobao_order").apply(raw, lookups=DictLookups({"sku": {}}), context={"shop": "shop-a"})
    assert result.ok, result.errors
    return result.value


@pytest.fixture
def acts(tmp_path: Path):  # noqa: ANN201
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", None, tmp_path)
    register(store, Registration(name="ledger", kind="beancount",
                                 settings={"path": str(tmp_path / "ledger" / "t.beancount")}, secrets={}), "t")
    o = order()
    store.upsert_order(o.key, channel=o.channel, shop=o.shop, external_id=o.external_id, source_connector="tb",
                       raw_id=1, stage="completed", canonical=o.model_dump(mode="json"))
    return FulfilmentActivities(store, ConnectorPool(store)), o, tmp_path / "ledger" / "t.beancount"


async def test_voucher_once_and_its_reversal_once(acts) -> None:  # noqa: ANN001
    activities, o, ledger = acts
    inp = VoucherInput(order_key=o.key, targets=["ledger"], carrier="SF")
    number = await activities.voucher(inp)
    assert number.endswith("-SHIP")
    assert await activities.voucher(inp) == number  # a retry: created=False, nothing written twice
    reversal = await activities.voucher(inp.model_copy(update={"reverse": True}))
    assert reversal == f"{number}-REV"
    await activities.voucher(inp.model_copy(update={"reverse": True}))
    text = ledger.read_text()
    assert text.count(f'voucher: "{number}"') == 1 and text.count(f'voucher: "{number}-REV"') == 1
    assert check_ledger(ledger) == []


async def test_a_refused_outbound_is_not_retried(acts) -> None:  # noqa: ANN001
    activities, o, _ = acts
    with pytest.raises(ApplicationError) as caught:
        await activities.sales_outbound(OutboundInput(order_key=o.key, erp="ledger", index=1, package="P1",
                                                      shipped_at=datetime.now(UTC)))
    assert caught.value.non_retryable and "cannot record sales outbounds" in str(caught.value)
