"""Search attributes the hub registers and sets, so that any order's history can be found with
``temporal workflow list --query 'ExternalOrderId="..."'`` or in the Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

CHANNEL = SearchAttributeKey.for_keyword("Channel")
SHOP = SearchAttributeKey.for_keyword("Shop")
EXTERNAL_ORDER_ID = SearchAttributeKey.for_keyword("ExternalOrderId")
SKUS = SearchAttributeKey.for_keyword_list("Skus")
STAGE = SearchAttributeKey.for_keyword("Stage")
CONNECTOR = SearchAttributeKey.for_keyword("Connector")
FLOW_NAME = SearchAttributeKey.for_keyword("FlowName")
FLOW_VERSION = SearchAttributeKey.for_keyword("FlowVersion")

ALL = [CHANNEL, SHOP, EXTERNAL_ORDER_ID, SKUS, STAGE, CONNECTOR, FLOW_NAME, FLOW_VERSION]


def cli_flags() -> list[str]:
    """``--search-attribute`` flags for ``temporal server start-dev``."""
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "TEXT": "Text", "INT": "Int"}
    return [f"--search-attribute={k.name}={kinds[k.indexed_value_type.name.removeprefix('INDEXED_VALUE_TYPE_')]}"
            for k in ALL]


async def ensure_registered(client: object, namespace: str) -> list[str]:
    """Register any missing search attribute (a reused or external server may lack them)."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    service = client.operator_service  # type: ignore[attr-defined]
    existing = await service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    missing = {k.name: int(k.indexed_value_type) for k in ALL if k.name not in existing.custom_attributes}
    if missing:
        await service.add_search_attributes(AddSearchAttributesRequest(namespace=namespace,
                                                                       search_attributes=missing))
    return sorted(missing)
