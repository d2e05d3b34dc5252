"""Qimen (奇门) WMS connector: outbound orders, shipment confirmations (push) and stock levels."""

from connectors.qimen.connector import QimenConnector, QimenSecrets, QimenSettings, qimen_sign

__all__ = ["QimenConnector", "QimenSecrets", "QimenSettings", "qimen_sign"]
