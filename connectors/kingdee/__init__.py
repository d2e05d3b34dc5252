"""Kingdee K3Cloud (金蝶云星空) WebAPI connector: sales documents, idempotent by bill number."""

from connectors.kingdee.connector import KingdeeConnector, KingdeeSecrets, KingdeeSettings

__all__ = ["KingdeeConnector", "KingdeeSecrets", "KingdeeSettings"]
