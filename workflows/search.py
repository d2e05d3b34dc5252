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

ALL = [CHANNEL, SHOP, EXTERNAL_ORDER_ID, SKUS, STAGE, CONNECTOR]


def cli_flags() -> list[str]:
    """``--search-attribute`` flags for ``temporal server start-dev``."""
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "TEXT": "Text", "INT": "Int"}
    return [f"--search-attribute={k.name}={kinds[k.indexed_value_type.name.removeprefix('INDEXED_VALUE_TYPE_')]}"
            for k in ALL]
