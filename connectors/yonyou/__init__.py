"""Yonyou YonSuite / YonBIP (用友) open API connector: sales orders, sales outbounds, GL vouchers."""

from connectors.yonyou.connector import YonyouConnector, YonyouSecrets, YonyouSettings

__all__ = ["YonyouConnector", "YonyouSecrets", "YonyouSettings"]
