"""Accounting vouchers composed from data: the fee file says what a shipped order costs and where it is booked.

    from mappings.vouchers import compose_shipment_voucher, load_fees

    fees = load_fees()                                   # mappings/fees/default.yaml, or a path
    voucher = compose_shipment_voucher(order, number=f"{code}-SHIP", on=shipped.date(), carrier="SF",
                                       weight_g=1200, fees=fees, scheme="beancount")

A shipment voucher books three balanced pairs, each only when its amount is not zero:

* the sale: receivable (debit) vs revenue (credit), for ``order.total`` (what the buyer paid);
* the platform commission: expense vs payable to the platform, ``rate × order.total`` rounded to
  cents (``ROUND_HALF_UP``);
* the logistics fee: expense vs payable to the carrier, from the carrier's first-weight price,
  the price per additional kg (per started step) and an optional surcharge for the receiver's
  region.

Every amount is a ``Decimal``; numbers in the fee file are read as exact decimals, never floats.
A cancellation after posting is booked with ``Voucher.reversal()`` (debits and credits swapped).
See docs/accounting.md.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from canonical import Channel, Order, Voucher, VoucherLine

__all__ = [
    "DEFAULT_FEES",
    "ROLES",
    "AccountScheme",
    "CarrierFees",
    "ChannelFees",
    "FeeError",
    "FeeFileError",
    "FeeTable",
    "VoucherAccounts",
    "compose_shipment_voucher",
    "is_beancount_account",
    "load_fees",
    "parse_fees",
]

DEFAULT_FEES = Path(__file__).resolve().parent / "fees" / "default.yaml"
"""The shipped fee file (example figures)."""

CENT = Decimal("0.01")
ROLES = ("receivable", "revenue", "commission_expense", "commission_payable", "logistics_expense",
         "logistics_payable")
"""The accounts a scheme names, in the order a shipment voucher uses them."""

BEANCOUNT_ROOTS = ("Assets", "Liabilities", "Equity", "Income", "Expenses")
_PLACEHOLDERS = frozenset({"channel", "carrier"})
_CODE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")
_CARRIER_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")


class FeeError(ValueError):
    """A voucher cannot be composed with this fee table (unknown channel, carrier or scheme...)."""


class FeeFileError(ValueError):
    """A fee file failed to load; ``issues`` lists every problem, each naming its field."""

    def __init__(self, source: str, issues: list[str]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"invalid fee file {source}:\n{lines}")


def _is_beancount_component(text: str, root: bool = False) -> bool:
    """Beancount's account grammar: a root of capitalised letters, then components starting with
    an upper-case letter or a digit, continued by letters, digits and '-'."""
    if not text or not (text[0].isupper() or (not root and text[0].isdigit())):
        return False
    return all(ch.isalnum() or ch == "-" for ch in text[1:])


def is_beancount_account(name: str) -> bool:
    parts = name.split(":")
    return (len(parts) >= 2 and parts[0] in BEANCOUNT_ROOTS
            and all(_is_beancount_component(part) for part in parts[1:]))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChannelFees(_Model):
    """What one channel charges: a commission as a fraction of the amount the buyer paid."""

    account: str = Field(min_length=1, description="the channel's component in account names ({channel}), e.g. Taobao")
    commission_rate: Decimal = Field(ge=0, le=1, allow_inf_nan=False, description="e.g. 0.05 for 5 %")
    label: str = ""


class CarrierFees(_Model):
    """A carrier's price table: first weight, then per additional kg (per started step), plus surcharges."""

    name: str = ""
    account: str = Field("", description="component in account names ({carrier}); default: the carrier code")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="default: the file's currency")
    first_weight_g: int = Field(1000, gt=0)
    first_price: Decimal = Field(ge=0, allow_inf_nan=False)
    additional_per_kg: Decimal = Field(Decimal("0"), ge=0, allow_inf_nan=False)
    step_g: int = Field(1000, gt=0, description="additional weight is charged per started step of this many grams")
    region_surcharges: dict[str, Decimal] = Field(
        default_factory=dict, description="province (prefix) → fixed amount per parcel")

    @field_validator("region_surcharges")
    @classmethod
    def _surcharges(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for region, amount in value.items():
            if not str(region).strip():
                raise ValueError("a region name is empty")
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"{region}: surcharge must be a finite amount >= 0 (got {amount})")
        return {str(region).strip(): amount for region, amount in value.items()}

    def fee(self, weight_g: int, region: str = "") -> Decimal:
        """First price, plus each started ``step_g`` beyond ``first_weight_g``, plus the surcharge of
        the longest region name ``region`` starts with; rounded to cents."""
        if weight_g < 0:
            raise FeeError(f"weight must be >= 0 g (got {weight_g})")
        extra_g = max(0, weight_g - self.first_weight_g)
        steps = -(-extra_g // self.step_g)  # ceiling
        amount = self.first_price + self.additional_per_kg * self.step_g * steps / 1000
        surcharged = self.surcharge_region(region)
        if surcharged is not None:
            amount += self.region_surcharges[surcharged]
        return amount.quantize(CENT, rounding=ROUND_HALF_UP)

    def surcharge_region(self, region: str) -> str | None:
        """The longest surcharge region name ``region`` starts with, or None."""
        region = region.strip()
        matches = [name for name in self.region_surcharges if region and region.startswith(name)]
        return max(matches, key=len) if matches else None


class AccountScheme(_Model):
    """Where each role is booked; templates may use ``{channel}`` and ``{carrier}``."""

    style: Literal["beancount", "codes"] = Field(
        description="beancount: names must be valid Beancount accounts; codes: chart-of-accounts codes (Kingdee)")
    receivable: str = Field(min_length=1)
    revenue: str = Field(min_length=1)
    commission_expense: str = Field(min_length=1)
    commission_payable: str = Field(min_length=1)
    logistics_expense: str = Field(min_length=1)
    logistics_payable: str = Field(min_length=1)

    @field_validator(*ROLES)
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            names = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
        except ValueError as exc:
            raise ValueError(f"{exc} in {template!r}") from None
        unknown = names - _PLACEHOLDERS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join(sorted(map(repr, unknown)))} in {template!r} "
                             "(use {channel} or {carrier})")
        return template

    def render(self, role: str, channel: str, carrier: str) -> str:
        return getattr(self, role).format(channel=channel, carrier=carrier)

    def account_problem(self, name: str) -> str | None:
        """Why ``name`` is not a valid account of this scheme's style, or None."""
        if self.style == "beancount":
            if not is_beancount_account(name):
                return (f"{name!r} is not a Beancount account (Root:Component..., root one of "
                        f"{', '.join(BEANCOUNT_ROOTS)}, components start with a capital letter or digit)")
        elif not _CODE_RE.match(name):
            return f"{name!r} is not an account code (letters, digits, '.', '_', '-')"
        return None


@dataclass(frozen=True)
class VoucherAccounts:
    """The six accounts of one (scheme, channel, carrier)."""

    receivable: str
    revenue: str
    commission_expense: str
    commission_payable: str
    logistics_expense: str
    logistics_payable: str


class FeeTable(_Model):
    """The fee file: commission per channel, price table per carrier, account schemes by name."""

    version: Literal[1] = 1
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$", description="currency of carrier prices by default")
    channels: dict[str, ChannelFees] = Field(min_length=1)
    carriers: dict[str, CarrierFees] = Field(default_factory=dict)
    schemes: dict[str, AccountScheme] = Field(min_length=1)

    _source: str = PrivateAttr("<data>")

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            known = {c.value for c in Channel}
            unknown = [str(k) for k in value if str(k).strip().lower() not in known]
            if unknown:
                raise ValueError(f"unknown channel(s) {', '.join(map(repr, unknown))}; canonical channels: "
                                 f"{', '.join(sorted(known))}")
            return {str(k).strip().lower(): v for k, v in value.items()}
        return value

    @field_validator("carriers", mode="before")
    @classmethod
    def _carrier_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bad = [str(k) for k in value if not _CARRIER_RE.match(str(k).strip().upper())]
            if bad:
                raise ValueError(f"bad carrier code(s) {', '.join(map(repr, bad))} (letters, digits, '_', '-')")
            return {str(k).strip().upper(): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _accounts_render(self) -> FeeTable:
        """Every account every scheme can produce is valid for its style, checked at load time."""
        problems: list[str] = []
        for scheme_name, scheme in self.schemes.items():
            for role in ROLES:
                if role.startswith("logistics"):
                    values = [(f"carriers.{code}: account {self.carrier_account(code)!r}", "",
                               self.carrier_account(code)) for code in self.carriers] or [("a carrier", "", "XX")]
                else:
                    values = [(f"channels.{name}.account {fees.account!r}", fees.account, "")
                              for name, fees in self.channels.items()]
                for what, channel, carrier in values:
                    account = scheme.render(role, channel, carrier)
                    problem = scheme.account_problem(account)
                    if problem:
                        problems.append(f"schemes.{scheme_name}.{role}: {problem} (with {what})")
                        break
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def source(self) -> str:
        return self._source

    def carrier_account(self, code: str) -> str:
        return self.carriers[code].account or code

    def channel_fees(self, channel: str | Channel) -> ChannelFees:
        name = channel.value if isinstance(channel, Channel) else str(channel).strip().lower()
        fees = self.channels.get(name)
        if fees is None:
            raise FeeError(f"channel {name!r} is not in the fee file {self._source} "
                           f"(channels: {', '.join(sorted(self.channels))})")
        return fees

    def carrier_fees(self, carrier: str) -> tuple[str, CarrierFees]:
        code = carrier.strip().upper()
        fees = self.carriers.get(code)
        if fees is None:
            raise FeeError(f"carrier {carrier!r} is not in the fee file {self._source} "
                           f"(carriers: {', '.join(sorted(self.carriers)) or 'none'})")
        return code, fees

    def scheme(self, name: str) -> AccountScheme:
        scheme = self.schemes.get(name)
        if scheme is None:
            raise FeeError(f"account scheme {name!r} is not in the fee file {self._source} "
                           f"(schemes: {', '.join(sorted(self.schemes))})")
        return scheme

    def commission(self, channel: str | Channel, total: Decimal) -> Decimal:
        """``rate × total``, rounded to cents half-up."""
        return (self.channel_fees(channel).commission_rate * total).quantize(CENT, rounding=ROUND_HALF_UP)

    def logistics_fee(self, carrier: str, weight_g: int, region: str = "") -> Decimal:
        return self.carrier_fees(carrier)[1].fee(weight_g, region)

    def carrier_currency(self, carrier: str) -> str:
        return self.carrier_fees(carrier)[1].currency or self.currency

    def accounts(self, scheme: str, channel: str | Channel, carrier: str) -> VoucherAccounts:
        chosen = self.scheme(scheme)
        channel_part = self.channel_fees(channel).account
        code, _ = self.carrier_fees(carrier)
        return VoucherAccounts(**{role: chosen.render(role, channel_part, self.carrier_account(code))
                                  for role in ROLES})


# --------------------------------------------------------------------------- loading


class _DecimalLoader(yaml.SafeLoader):
    """YAML whose floats are read as exact ``Decimal`` (``0.1`` is 0.1, not 0.1000000000000000055...)."""


def _decimal_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # .inf / .nan: left as text, the model rejects it with the field named


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal_float)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(file)"


def _walk_errors(exc: ValidationError) -> Iterator[str]:
    for err in exc.errors():
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if err["loc"]:
            yield f"{_loc(err['loc'])}: {message}"
        else:  # the table-wide checks name their fields themselves, one per line
            yield from message.splitlines()


def parse_fees(text: str | bytes, source: str = "<string>") -> FeeTable:
    """A fee table from YAML text; raises :class:`FeeFileError` listing every problem with its field."""
    try:
        data = yaml.load(text, Loader=_DecimalLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise FeeFileError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise FeeFileError(source, ["(file): expected a mapping with channels, carriers and schemes"])
    try:
        table = FeeTable.model_validate(data)
    except ValidationError as exc:
        raise FeeFileError(source, list(_walk_errors(exc))) from exc
    table._source = source
    return table


def load_fees(path: str | Path | None = None) -> FeeTable:
    """The fee table at ``path`` (default: the shipped ``mappings/fees/default.yaml``).

    Raises :class:`FeeFileError` (``source`` = the file, ``issues`` = one per field) when the file is
    missing, not YAML, or does not validate.
    """
    file = Path(path) if path is not None else DEFAULT_FEES
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise FeeFileError(str(file), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    return parse_fees(text, source=str(file))


# --------------------------------------------------------------------------- composition


def _pair(lines: list[VoucherLine], debit: str, credit: str, amount: Decimal, memo: str) -> None:
    if amount > 0:
        lines.append(VoucherLine(account=debit, debit=amount, memo=memo))
        lines.append(VoucherLine(account=credit, credit=amount, memo=memo))
    elif amount < 0:
        raise FeeError(f"{memo}: negative amount {amount}")


def _percent(rate: Decimal) -> str:
    text = format((rate * 100).normalize(), "f")
    return f"{text}%"


def compose_shipment_voucher(order: Order, *, number: str, on: date, carrier: str, weight_g: int, fees: FeeTable,
                             scheme: str = "beancount", region: str | None = None,
                             narration: str | None = None) -> Voucher:
    """The voucher of one shipped order: sale, platform commission, logistics fee (see the module doc).

    ``region``: where the parcel goes, for the carrier's region surcharges (default: the receiver's
    province). Raises :class:`FeeError` for an unknown channel, carrier or scheme, a carrier priced
    in another currency than the order, or an order with nothing to book.
    """
    channel = order.channel.value
    accounts = fees.accounts(scheme, channel, carrier)
    code, carrier_fees = fees.carrier_fees(carrier)
    rate = fees.channel_fees(channel).commission_rate
    total = order.total
    commission = fees.commission(channel, total)
    where = order.receiver.address.province if region is None else region
    logistics = fees.logistics_fee(code, weight_g, where)
    if logistics > 0 and fees.carrier_currency(code) != order.currency:
        raise FeeError(f"carrier {code} is priced in {fees.carrier_currency(code)} and order {order.key} is in "
                       f"{order.currency}: one voucher has one currency (give the carrier a {order.currency} "
                       f"price table in {fees.source})")
    lines: list[VoucherLine] = []
    _pair(lines, accounts.receivable, accounts.revenue, total, f"{channel} order {order.external_id}")
    _pair(lines, accounts.commission_expense, accounts.commission_payable, commission,
          f"{channel} commission {_percent(rate)} of {total}")
    surcharged = carrier_fees.surcharge_region(where)
    _pair(lines, accounts.logistics_expense, accounts.logistics_payable, logistics,
          f"{code} {weight_g} g" + (f", {surcharged} surcharge" if surcharged else ""))
    if not lines:
        raise FeeError(f"order {order.key}: nothing to book (total, commission and logistics fee are all zero)")
    return Voucher(number=number, date=on, reference=order.key, currency=order.currency, channel=channel,
                   narration=narration if narration is not None else
                   f"{channel} order {order.external_id} shipped by {code} ({weight_g} g)",
                   lines=lines)
