"""Beancount ledger (local file): the embedded default voucher target, plus reading helpers."""

from connectors.beancount.connector import BeancountConnector, BeancountSettings
from connectors.beancount.ledger import BeancountLedger, LedgerError, check_ledger, format_voucher, ledger_summary

__all__ = ["BeancountConnector", "BeancountLedger", "BeancountSettings", "LedgerError", "check_ledger",
           "format_voucher", "ledger_summary"]
