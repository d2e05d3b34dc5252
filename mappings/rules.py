"""Declarative business rule sets: audit, approval, routing and promotion rules over the canonical order.

A rule set is a YAML file (``mappings/rulesets/default.yaml`` is the shipped example, ``docs/rules.md``
the guide). Its rules are CEL conditions (the language of mappings and flow routing, through
:mod:`mappings.expr`) plus one rule kind CEL cannot express, *velocity* (how many orders went to one
phone, address or buyer lately: the caller counts, this module decides)::

    ruleset = load_rule_set(Path("mappings/rulesets/default.yaml"))   # RuleSetError lists every problem
    outcome = evaluate(ruleset, order, now=datetime.now(UTC), velocity=counter, stock=levels)
    outcome.review, outcome.approval, outcome.warehouse, outcome.carrier, outcome.split, outcome.gifts
    ruleset.version()                                                # first 12 hex of the content hash

How a rule set is evaluated:

* The sections run in a fixed order, whatever the order of their keys in the file: ``audit``,
  ``approval``, ``routing``, ``promotions``; within a section, the rules in file order. Every rule
  is tried (the outcome explains each one, fired or not, with the values it read).
* Decisions that hold one value (``approval``, ``warehouse``, ``carrier``, ``merge``,
  ``hold_until_paid``) are taken from the **first** fired rule that sets them: put the specific
  rule above the general one; a later fired rule is reported as "already decided by ...". Lists
  accumulate: every fired ``review`` adds its reason, every fired ``gift`` adds its line.
* A condition that cannot be evaluated on an order (a type mismatch, a missing key) does not fail
  the evaluation: the rule is reported with its error and the order goes to manual review. So does
  a decision that cannot be carried out (``carrier: cheapest`` with no carrier serving the region,
  ``warehouse: auto`` with stock short). Errors of the callbacks (the store is down) propagate.

What conditions see (see :data:`VARIABLES`): ``order`` (the canonical order as routing conditions
see it, plus hashes of the receiver's phone and address and the buyer), line facts from the rule
set's ``skus:`` table (``categories``, ``weight_g``, ``temperature``), ``urgent``, the receiver's
phone checks (``phone_ok``...; the expression adapter admits no user-defined functions, so they are
precomputed), ``province`` (short form), ``now``, and each named list of ``lists:`` by its name.

This module is pure: it reads no store and calls no connector; velocity counts and stock levels
come in as callbacks.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import re
import typing
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from canonical import Address, LineRefundStatus, Order, OrderLine, Sku
from canonical.redact import redact_value
from mappings.expr import ExpressionError, compile_expr

__all__ = [
    "ACTIONS_BY_SECTION",
    "DEFAULT_RULE_SET",
    "SECTIONS",
    "VARIABLES",
    "Approval",
    "Carrier",
    "RuleOutcome",
    "RuleSet",
    "RuleSetError",
    "RuleTrace",
    "SplitLine",
    "Warehouse",
    "address_hash",
    "buyer_hash",
    "evaluate",
    "load_rule_set",
    "merge_key",
    "normalize_phone",
    "parse_rule_set",
    "phone_hash",
    "region_name",
]

DEFAULT_RULE_SET = Path(__file__).parent / "rulesets" / "default.yaml"

Section = Literal["audit", "approval", "routing", "promotions"]
SECTIONS: tuple[str, ...] = typing.get_args(Section)
"""The order sections are evaluated in, whatever their order in the file."""

ACTIONS_BY_SECTION: dict[str, frozenset[str]] = {
    "audit": frozenset({"review"}),
    "approval": frozenset({"approve", "review"}),
    "routing": frozenset({"warehouse", "carrier", "merge", "review"}),
    "promotions": frozenset({"gift", "hold_until_paid", "review"}),
}
"""Which actions a rule may take in each section (``review`` anywhere)."""

Temperature = Literal["ambient", "chilled", "frozen"]
_TEMPERATURE_RANK = {"ambient": 0, "chilled": 1, "frozen": 2}

VARIABLES: dict[str, str] = {
    "order": "the canonical order (money as doubles, timestamps, enums lower-case; plus order.skus, order.units, "
             "order.receiver.mobile_hash / phone_hash / address_hash, order.buyer.hash)",
    "categories": "distinct categories of the order's lines, from the rule set's skus table (unknown ones left out)",
    "weight_g": "total weight in grams of the shippable lines whose weight is known",
    "weight_known": "true when every shippable line's weight is known",
    "urgent": "the order is tagged urgent",
    "temperature": "'ambient', 'chilled' or 'frozen': the coldest any line needs",
    "province": "the receiver's province, short form ('上海市' → '上海', '广西壮族自治区' → '广西')",
    "phone_mainland": "the receiver's mobile (else phone) is a CN mainland mobile, 1[3-9] and 9 digits (+86 allowed)",
    "phone_international": "the receiver's mobile (else phone) is +E.164 outside China (+ and 7-15 digits)",
    "phone_ok": "phone_mainland || phone_international, or the receiver is protected (platform ciphertext)",
    "now": "the evaluation time (a timestamp): now - order.created_at > duration('2h')",
}
"""Names a condition may read besides the rule set's own lists (each by its name)."""

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_NAME_HINT = "use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit (at most 100)"
_LIST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
_CEL_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import",
    "let", "loop", "package", "namespace", "return", "var", "void", "while", "math", "sets", "base64", "strings",
    "lists", "optional", "int", "uint", "double", "string", "bytes", "bool", "list", "map", "type", "dyn",
    "duration", "timestamp", "has", "size",
})
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_CLEAR_MOBILE = re.compile(r"^\s*(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}\s*$")
_STRING_LITERAL = re.compile(r"""(?:[rRbB]{0,2})("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_PATH = re.compile(r"(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\()?")
_LISTS_NAMESPACE = re.compile(r"(?<![\w.])lists\s*\.\s*([A-Za-z_]\w*)(?!\s*\()")


# -- small types -------------------------------------------------------------------------------------
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def parse_duration(value: Any) -> Any:
    """``30m``, ``4h``, ``1d``, ``1h30m`` → timedelta; a number is seconds (as flow files read them)."""
    if isinstance(value, bool):
        raise ValueError("a duration, e.g. 30m, 4h, 1d")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return timedelta(seconds=float(text))
        if _DURATION.match(text):
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text)))
        raise ValueError(f"{value!r} is not a duration; use e.g. 30m, 4h, 1d, 1h30m")
    return value


def format_duration(value: timedelta) -> str:
    """The compact form :func:`parse_duration` reads back (``4h``, ``1h30m``, ``30m``)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    seconds, ms = divmod(abs(total_ms), 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return ("-" if total_ms < 0 else "") + "".join(parts)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


def _money_in(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("an amount, e.g. 12 or 12.50")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _money_out(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


Money = Annotated[
    Decimal,
    BeforeValidator(_money_in),
    Field(ge=0, max_digits=18, decimal_places=4),
    PlainSerializer(_money_out, return_type=str, when_used="json"),
]
"""An amount in the order's currency; ``12`` and ``12.0`` are the same amount (and the same version)."""

Kilograms = Annotated[
    Decimal,
    BeforeValidator(_money_in),
    Field(ge=0, le=1000, max_digits=10, decimal_places=3),
    PlainSerializer(_money_out, return_type=str, when_used="json"),
]


def _string_set(value: list[str]) -> list[str]:
    """Set-like lists are kept sorted and without repeats, so reordering them is not a new version."""
    return sorted({v.strip() for v in value if v.strip()})


StrSet = Annotated[list[str], AfterValidator(_string_set)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- the rule set ------------------------------------------------------------------------------------
class Velocity(_Model):
    """Fires when more than ``more_than`` orders went to one phone/address/buyer within ``within``."""

    by: Literal["phone", "address", "buyer"]
    within: Duration = Field(description="the window, e.g. 30m, 2h, 1d (at most 31d)")
    more_than: int = Field(ge=0, description="fires when the count (this order included) is larger")

    @field_validator("within")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=31):
            raise ValueError("at most 31d (the velocity log is not kept longer)")
        return value


class ApproveAction(_Model):
    """A person with ``role`` must approve within ``within``; else it goes to ``escalate_to``."""

    role: str = Field(min_length=1, max_length=100)
    within: Duration
    escalate_to: str | None = Field(None, min_length=1, max_length=100)
    remind_after: Duration | None = None

    @model_validator(mode="after")
    def _reminder_first(self) -> ApproveAction:
        if self.remind_after is not None and self.remind_after >= self.within:
            raise ValueError(f"remind_after ({format_duration(self.remind_after)}) must be shorter than within "
                             f"({format_duration(self.within)})")
        return self


class GiftAction(_Model):
    sku: str = Field(min_length=1, max_length=200)
    quantity: int = Field(1, gt=0, le=1000)
    title: str = ""


class Action(_Model):
    """What a fired rule decides; which keys are allowed depends on the section (ACTIONS_BY_SECTION)."""

    review: str | None = Field(None, min_length=1, max_length=200, description="manual review reason")
    approve: ApproveAction | None = None
    warehouse: str | None = Field(None, min_length=1, max_length=100,
                                  description="a warehouse code, or `auto`: from `warehouses:` by region and stock")
    carrier: str | None = Field(None, min_length=1, max_length=50,
                                description="a carrier code, or `cheapest`: from the `carriers:` cost table")
    merge: Literal[True] | None = Field(None, description="merge with open orders of the same buyer and address")
    gift: GiftAction | None = None
    hold_until_paid: Literal[True] | None = None

    @model_validator(mode="after")
    def _something(self) -> Action:
        if not self.keys():
            raise ValueError("an action needs at least one of: " + ", ".join(Action.model_fields))
        return self

    def keys(self) -> list[str]:
        return [k for k in Action.model_fields if getattr(self, k) is not None]


class Rule(_Model):
    name: str
    description: str = ""
    when: str | None = Field(None, description="CEL condition; required unless the rule is a velocity rule")
    velocity: Velocity | None = None
    action: Action

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"rule name {value!r}: {_NAME_HINT}")
        return value

    @field_validator("when")
    @classmethod
    def _compile(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_condition(value)
        return value

    @model_validator(mode="after")
    def _condition(self) -> Rule:
        if self.when is None and self.velocity is None:
            raise ValueError("a rule needs `when` (a condition; `\"true\"` for always) or `velocity`")
        return self


class Sections(_Model):
    """The four sections; evaluated in this order (the file's key order does not matter)."""

    audit: list[Rule] = Field(default_factory=list, description="checks that send the order to manual review")
    approval: list[Rule] = Field(default_factory=list, description="who must approve the order, within how long")
    routing: list[Rule] = Field(default_factory=list, description="warehouse, carrier, split, merge")
    promotions: list[Rule] = Field(default_factory=list, description="gifts, presale holds")

    def rules(self) -> list[tuple[str, int, Rule]]:
        return [(section, i, rule) for section in SECTIONS for i, rule in enumerate(getattr(self, section))]


class Rate(_Model):
    """A carrier's price for some regions, instead of its default base/per_kg."""

    regions: StrSet = Field(min_length=1)
    base: Money
    per_kg: Money = Decimal("0")


class Carrier(_Model):
    """One row of the cost table: ``base`` covers the first ``first_kg``; each further kg (or part)
    costs ``per_kg``. ``regions`` it serves (empty: everywhere), ``rates`` per region."""

    code: str = Field(min_length=1, max_length=50)
    base: Money
    per_kg: Money = Decimal("0")
    first_kg: Kilograms = Decimal("1")
    regions: StrSet = Field(default_factory=list)
    temperature: list[Temperature] = Field(default_factory=lambda: ["ambient"])
    max_weight_g: int | None = Field(None, gt=0)
    rates: list[Rate] = Field(default_factory=list)

    @field_validator("temperature")
    @classmethod
    def _temperatures(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=_TEMPERATURE_RANK.__getitem__)

    def serves(self, province: str, country: str, temperature: str, weight_g: int) -> str | None:
        """Why this carrier cannot take the order, or None when it can."""
        if self.regions and not _in_regions(self.regions, province, country):
            return "region"
        if temperature not in self.temperature:
            return "temperature"
        if self.max_weight_g is not None and weight_g > self.max_weight_g:
            return "weight"
        return None

    def cost(self, province: str, country: str, weight_g: int) -> Decimal:
        base, per_kg = self.base, self.per_kg
        for rate in self.rates:
            if _in_regions(rate.regions, province, country):
                base, per_kg = rate.base, rate.per_kg
                break
        extra_g = max(Decimal(0), Decimal(weight_g) - self.first_kg * 1000)
        return base + per_kg * (extra_g / 1000).to_integral_value(rounding=ROUND_CEILING)


class Warehouse(_Model):
    """A warehouse ``warehouse: auto`` may choose: where it ships, what it stocks, how cold it keeps."""

    regions: StrSet = Field(default_factory=list, description="provinces (or country codes) it ships to; empty: all")
    categories: StrSet = Field(default_factory=list, description="categories it stocks; empty: any")
    temperature: list[Temperature] = Field(default_factory=lambda: ["ambient"])
    priority: int = Field(100, description="lower is preferred; ties by code")

    @field_validator("temperature")
    @classmethod
    def _temperatures(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=_TEMPERATURE_RANK.__getitem__)


class SkuFacts(_Model):
    """What the rules know of a SKU (the canonical order does not carry it)."""

    category: str = ""
    weight_g: int | None = Field(None, ge=0)
    temperature: Temperature = "ambient"


def _hash_list(value: list[str]) -> list[str]:
    return _string_set([v.lower() if _HEX64.match(v.strip()) else v for v in value])


class RuleSet(_Model):
    """A named, versioned set of rules and the tables its actions use."""

    name: str
    description: str = ""
    sections: Sections = Field(default_factory=Sections)
    carriers: list[Carrier] = Field(default_factory=list, description="cost table for `carrier: cheapest`")
    warehouses: dict[str, Warehouse] = Field(default_factory=dict, description="for `warehouse: auto`")
    lists: dict[str, Annotated[list[str], AfterValidator(_hash_list)]] = Field(
        default_factory=dict, description="named lists, each a variable of the conditions (sha256 hex for people)")
    skus: dict[str, SkuFacts] = Field(
        default_factory=dict, description="SKU code or glob pattern (TD-SKU-00*) → category, weight, temperature")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"rule set name {value!r}: {_NAME_HINT}")
        return value

    @field_validator("lists")
    @classmethod
    def _lists(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, entries in value.items():
            if not _LIST_NAME.match(name):
                raise ValueError(f"list name {name!r}: lower-case letters, digits and '_', starting with a letter")
            if name in VARIABLES or name in _CEL_RESERVED:
                raise ValueError(f"list name {name!r} is taken (a variable or a CEL word); choose another")
            for i, entry in enumerate(entries):
                if _CLEAR_MOBILE.match(entry):
                    raise ValueError(f"{name}[{i}] looks like a phone number in clear; lists of people hold "
                                     f"sha256 hashes (tongdao rules hash PHONE)")
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> RuleSet:
        problems: list[str] = []
        seen: dict[str, str] = {}
        names = set(VARIABLES) | set(self.lists)
        carrier_codes = [c.code for c in self.carriers]
        for code in sorted({c for c in carrier_codes if carrier_codes.count(c) > 1}):
            problems.append(f"carriers: {code!r} is listed twice")
        for section, i, rule in self.sections.rules():
            where = f"sections.{section}[{i}] ({rule.name})"
            if rule.name in seen:
                problems.append(f"{where}.name: {rule.name!r} is also the name of {seen[rule.name]}")
            seen.setdefault(rule.name, where)
            if rule.when is not None:
                unknown = sorted(compile_expr(rule.when).names - names)
                if unknown:
                    problems.append(f"{where}.when: unknown name {', '.join(map(repr, unknown))}: conditions read "
                                    f"{', '.join(sorted(names))} (expression: {rule.when})")
            for key in rule.action.keys():
                if key not in ACTIONS_BY_SECTION[section]:
                    home = next(s for s in SECTIONS if key in ACTIONS_BY_SECTION[s])
                    problems.append(f"{where}.action.{key}: not an action of section {section} (it belongs in "
                                    f"{home}); {section} rules may: {', '.join(sorted(ACTIONS_BY_SECTION[section]))}")
            action = rule.action
            if action.carrier == "cheapest" and not self.carriers:
                problems.append(f"{where}.action.carrier: `cheapest` needs a `carriers:` cost table")
            elif action.carrier not in (None, "cheapest") and self.carriers and action.carrier not in carrier_codes:
                problems.append(f"{where}.action.carrier: {action.carrier!r} is not in the carriers table "
                                f"({', '.join(carrier_codes)})")
            if action.warehouse == "auto" and not self.warehouses:
                problems.append(f"{where}.action.warehouse: `auto` needs a `warehouses:` table")
            elif action.warehouse not in (None, "auto") and self.warehouses and action.warehouse not in self.warehouses:
                problems.append(f"{where}.action.warehouse: {action.warehouse!r} is not in the warehouses table "
                                f"({', '.join(sorted(self.warehouses))})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- identity ---------------------------------------------------------------------------------
    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON: independent of key order, file format and spelling."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def version(self) -> str:
        """The rule set's version: the first 12 hex characters of its content hash."""
        return self.content_hash()[:12]

    # -- lookups ----------------------------------------------------------------------------------
    def sku_facts(self, sku: str) -> SkuFacts | None:
        """The ``skus:`` entry of a SKU: its exact code, else the longest glob pattern that matches."""
        if sku in self.skus:
            return self.skus[sku]
        patterns = sorted((p for p in self.skus if any(c in p for c in "*?[") and fnmatch.fnmatchcase(sku, p)),
                          key=lambda p: (-len(p), p))
        return self.skus[patterns[0]] if patterns else None

    def warehouse_order(self) -> list[str]:
        return sorted(self.warehouses, key=lambda code: (self.warehouses[code].priority, code))


class RuleSetError(ValueError):
    """A rule set file that cannot be used; ``problems`` lists every one, each with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


# -- conditions at load time -------------------------------------------------------------------------
def _field_tree(model: type[BaseModel]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        tree[name] = _field_tree(ann) if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    for name in getattr(model, "model_computed_fields", {}):
        tree[name] = None
    return tree


_ORDER_TREE: dict[str, Any] = _field_tree(Order)
_ORDER_TREE.update({"skus": None, "units": None})
_ORDER_TREE["receiver"].update({"mobile_hash": None, "phone_hash": None, "address_hash": None})
_ORDER_TREE["buyer"].update({"hash": None})


def _strip_strings(source: str) -> str:
    return _STRING_LITERAL.sub(lambda m: " " * len(m.group()), source)


def _paths(source: str) -> list[tuple[str, list[str], bool]]:
    """``(root, [keys...], is_call)`` for every dotted name in the expression (not in string literals)."""
    found = []
    for match in _PATH.finditer(_strip_strings(source)):
        keys = [k.strip() for k in match.group(2).split(".")[1:]] if match.group(2) else []
        found.append((match.group(1), keys, match.group(3) is not None))
    return found


def _check_condition(source: str) -> None:
    """Compile; refuse the ``lists.`` namespace spelling and fields the canonical order does not have."""
    try:
        expr = compile_expr(source)
    except ExpressionError as exc:
        message = str(exc)
        if "unknown function" in message:
            message += "; rule sets have no functions of their own: use the variables (phone_ok, " \
                       "phone_mainland, phone_international...) or CEL's own (matches, startsWith, size...)"
        raise ValueError(message) from None
    match = _LISTS_NAMESPACE.search(_strip_strings(source))
    if match:
        raise ValueError(f"`lists.{match.group(1)}`: `lists` is a CEL namespace; a named list is a variable of its "
                         f"own, write `{match.group(1)}` (expression: {source})")
    if "order" not in expr.names:
        return
    for root, keys, is_call in _paths(source):
        if root != "order":
            continue
        if is_call and keys:
            keys = keys[:-1]  # order.receiver.mobile.matches(...): the last name is a method
        node: Any = _ORDER_TREE
        walked = ["order"]
        for key in keys:
            if not isinstance(node, dict):
                break
            if key not in node:
                close = difflib.get_close_matches(key, list(node), n=1)
                hint = f" (did you mean {'.'.join([*walked, close[0]])}?)" if close else ""
                raise ValueError(f"{'.'.join(walked)} has no field {key!r}{hint} (expression: {source})")
            node = node[key]
            walked.append(key)


# -- loading -----------------------------------------------------------------------------------------
def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    """``('sections', 'audit', 2, 'when')`` → ``sections.audit[2] (blacklist).when``."""
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if len(loc) > 2 and loc[0] == "sections" and isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f" ({node['name']})"
        else:
            text += ("." if text else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text


def _problems(exc: ValidationError, data: Any) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        where = _format_loc(loc, data)
        for line in message.split("\n"):
            problems.append(f"{where}: {line}" if where else line)
    return problems


def parse_rule_set(data: Any, source: str = "<rule set>") -> RuleSet:
    """A rule set from YAML text or an already-parsed mapping; ``RuleSetError`` lists every problem."""
    if isinstance(data, bytes | str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise RuleSetError(source, [f"not valid YAML{where}: {problem}"]) from None
    if not isinstance(data, dict):
        raise RuleSetError(source, [f"a rule set is a mapping (name:, sections: ...), not {type(data).__name__}"])
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleSetError(source, _problems(exc, data)) from None


def load_rule_set(path: Path | str) -> RuleSet:
    """Read and validate a rule set file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RuleSetError(str(path), ["not a UTF-8 text file"]) from None
    except OSError as exc:
        raise RuleSetError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_rule_set(text, str(path))


# -- hashing personal values -------------------------------------------------------------------------
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_phone(value: str) -> str:
    """One spelling per number: separators dropped, ``+86``/``0086``/``86`` dropped before a mainland
    mobile, ``00`` read as ``+``. A masked value (``138****8000``) is kept as it is."""
    text = unicodedata.normalize("NFKC", value or "").strip()
    if not text or "*" in text:
        return text
    plus = text.startswith("+")
    digits = re.sub(r"\D", "", text)
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if digits.startswith("86") and _CN_MOBILE.fullmatch(digits[2:]) and (plus or len(digits) == 13):
        return digits[2:]
    return "+" + digits if plus else digits


def phone_hash(value: str) -> str:
    """sha256 hex of the normalized phone number (what blacklists hold); ``""`` for no number."""
    normalized = normalize_phone(value)
    return _sha256(normalized) if normalized else ""


def region_name(value: str) -> str:
    """A province (or city) in its short form, for comparisons: ``上海市`` → ``上海``, ``广西壮族自治区``
    → ``广西``, ``Zhejiang`` → ``zhejiang``."""
    text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", value or "")).casefold()
    for suffix in ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市"):
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return text


def _in_regions(regions: list[str], province: str, country: str) -> bool:
    short = region_name(province)
    return any(r == country or (short and region_name(r) == short) for r in regions)


def _address_text(address: Address) -> str:
    parts = [address.country.upper(), region_name(address.province), region_name(address.city), address.district,
             address.town, address.street]
    return "|".join(re.sub(r"\s+", "", unicodedata.normalize("NFKC", p)).casefold() for p in parts)


def address_hash(address: Address) -> str:
    """sha256 hex of the normalized address (country, province, city, district, town, street)."""
    if not (address.street or address.city or address.district):
        return ""
    return _sha256(_address_text(address))


def buyer_hash(order: Order) -> str:
    """sha256 hex of ``channel:buyer`` (the buyer's id, else nick, else email); ``""`` for an anonymous buyer."""
    who = order.buyer.id or order.buyer.nick or order.buyer.email
    return _sha256(f"{order.channel.value}:{who}") if who else ""


def merge_key(order: Order) -> str:
    """Orders with this key may ship as one parcel: same channel and shop, buyer, receiver and address."""
    receiver = order.receiver
    parts = [order.channel.value, order.shop, buyer_hash(order), receiver.name,
             normalize_phone(receiver.mobile or receiver.phone), _address_text(receiver.address)]
    return _sha256(json.dumps(parts, ensure_ascii=False))


# -- facts ---------------------------------------------------------------------------------------------
class _Facts:
    """Everything evaluation needs about one order, computed once."""

    def __init__(self, ruleset: RuleSet, order: Order, now: datetime, catalog: Mapping[str, Sku] | None) -> None:
        self.order = order
        self.lines = [line for line in order.lines if line.refund_status != LineRefundStatus.REFUNDED]
        self.sku: dict[str, SkuFacts] = {}
        for line in order.lines:
            facts = ruleset.sku_facts(line.sku) or SkuFacts()
            known = catalog.get(line.sku) if catalog else None
            if known is not None:
                facts = facts.model_copy(update={"category": known.category or facts.category,
                                                 "weight_g": known.weight_g or facts.weight_g})
            self.sku[line.sku] = facts
        weights = [(self.sku[line.sku].weight_g, line.quantity) for line in self.lines]
        self.weight_g = sum(w * q for w, q in weights if w is not None)
        self.weight_known = all(w is not None for w, _ in weights)
        self.categories = sorted({self.sku[line.sku].category for line in self.lines if self.sku[line.sku].category})
        self.temperature = max((self.sku[line.sku].temperature for line in self.lines), key=_TEMPERATURE_RANK.get,
                               default="ambient")
        receiver = order.receiver
        self.phone = normalize_phone(receiver.mobile or receiver.phone)
        self.phone_mainland = bool(_CN_MOBILE.fullmatch(self.phone))
        self.phone_international = bool(_E164.fullmatch(self.phone)) and not self.phone.startswith("+86")
        self.hashes = {"phone": _sha256(self.phone) if self.phone else "", "address": address_hash(receiver.address),
                       "buyer": buyer_hash(order)}
        self.province = receiver.address.province
        self.country = receiver.address.country.upper()

        extras = {"skus": order.skus, "units": sum(line.quantity for line in order.lines)}
        receiver_extras = {"mobile_hash": phone_hash(receiver.mobile), "phone_hash": phone_hash(receiver.phone),
                           "address_hash": self.hashes["address"]}
        self.variables: dict[str, Any] = {
            "categories": self.categories,
            "weight_g": self.weight_g,
            "weight_known": self.weight_known,
            "urgent": "urgent" in order.tags,
            "temperature": self.temperature,
            "province": region_name(self.province),
            "phone_mainland": self.phone_mainland,
            "phone_international": self.phone_international,
            "phone_ok": receiver.protected or self.phone_mainland or self.phone_international,
            "now": now,
            **ruleset.lists,
        }
        cel_order = order.model_dump()
        cel_order.update(extras)
        cel_order["receiver"].update(receiver_extras)
        cel_order["buyer"]["hash"] = self.hashes["buyer"]
        self.cel = {**self.variables, "order": cel_order}
        shown = order.model_dump(mode="json")
        shown.update(extras)
        shown["receiver"].update(receiver_extras)
        shown["buyer"]["hash"] = self.hashes["buyer"]
        self.shown = {**self.variables, "order": shown, "now": now.isoformat()}
        self.list_names = frozenset(ruleset.lists)

    def read(self, source: str) -> dict[str, Any]:
        """The values an expression reads, as an operator may see them (personal fields masked)."""
        values: dict[str, Any] = {}
        for root, keys, is_call in _paths(source):
            if root not in self.shown:
                continue
            if is_call and keys:
                keys = keys[:-1]
            node: Any = self.shown[root]
            walked = [root]
            for key in keys:
                if not isinstance(node, dict) or key not in node:
                    break
                node = node[key]
                walked.append(key)
            if root in self.list_names and len(walked) == 1:
                values[root] = f"[{len(node)} entries]"
            elif isinstance(node, dict):
                continue  # a whole map (order.receiver) is too much to show; its fields are shown when read
            elif isinstance(node, list) and len(node) > 20:
                values[".".join(walked)] = f"[{len(node)} entries]"
            elif isinstance(node, str) or (isinstance(node, list) and all(isinstance(v, str) for v in node)):
                values[".".join(walked)] = redact_value(walked[-1], node)
            else:
                values[".".join(walked)] = node
        return values


# -- the outcome -------------------------------------------------------------------------------------
class RuleTrace(BaseModel):
    """One rule as it was tried on the order."""

    section: str
    rule: str
    fired: bool
    reason: str = Field(description="why it fired or not, in a sentence")
    condition: str | None = None
    read: dict[str, Any] = Field(default_factory=dict, description="the values the condition read (masked)")
    decided: list[str] = Field(default_factory=list, description="decisions this rule made")
    error: str | None = None


class Approval(BaseModel):
    rule: str
    role: str
    within: Duration
    escalate_to: str | None = None
    remind_after: Duration | None = None


class SplitLine(BaseModel):
    line_id: str
    sku: str
    quantity: int


class RuleOutcome(BaseModel):
    """Every rule tried, and what the rule set decided for the order."""

    ruleset: str
    version: str
    order_key: str
    evaluated_at: datetime
    facts: dict[str, Any] = Field(default_factory=dict, description="the computed variables (lists left out)")
    rules: list[RuleTrace] = Field(default_factory=list)
    review: list[str] = Field(default_factory=list, description="manual review reasons; empty: no review")
    approval: Approval | None = None
    warehouse: str | None = None
    carrier: str | None = None
    carrier_cost: Money | None = Field(None, description="from the cost table, when the carrier is in it")
    split: dict[str, list[SplitLine]] | None = Field(None, description="warehouse → lines, when no single one can")
    merge_key: str | None = None
    gifts: list[OrderLine] = Field(default_factory=list)
    hold_until_paid: bool = False

    def fired(self) -> list[str]:
        return [t.rule for t in self.rules if t.fired]


VelocityCounter = Callable[[str, str, timedelta], int]
"""``(kind, value_hash, within) -> orders`` with that phone/address/buyer hash in the window up to now,
this order included."""
StockLevels = Callable[[str], Mapping[str, int]]
"""``sku -> {warehouse: available units}``."""


# -- evaluation --------------------------------------------------------------------------------------
def evaluate(ruleset: RuleSet, order: Order, *, velocity: VelocityCounter | None = None,
             stock: StockLevels | None = None, now: datetime,
             catalog: Mapping[str, Sku] | None = None) -> RuleOutcome:
    """Run every rule of ``ruleset`` on ``order``; see the module docstring for the semantics.

    ``velocity`` counts orders per phone/address/buyer hash (without it velocity rules do not fire
    and say so); ``stock`` gives a SKU's available units per warehouse (without it ``warehouse:
    auto`` takes the preferred eligible warehouse); ``catalog`` (SKU → canonical ``Sku``) adds
    categories and weights to the rule set's ``skus`` table.
    """
    if not isinstance(order, Order):
        raise TypeError(f"evaluate() takes a canonical Order, not {type(order).__name__}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    facts = _Facts(ruleset, order, now, catalog)
    outcome = RuleOutcome(ruleset=ruleset.name, version=ruleset.version(), order_key=order.key, evaluated_at=now,
                          facts={k: v for k, v in facts.shown.items() if k not in facts.list_names and k != "order"})
    decided_by: dict[str, str] = {}
    for section, _, rule in ruleset.sections.rules():
        trace = _try(rule, section, facts, velocity)
        outcome.rules.append(trace)
        if trace.error is not None:
            _add_review(outcome, f"rule {rule.name} could not be evaluated: {trace.error}")
        if trace.fired:
            _apply(ruleset, rule, trace, outcome, facts, stock, decided_by)
    return outcome


def _try(rule: Rule, section: str, facts: _Facts, velocity: VelocityCounter | None) -> RuleTrace:
    trace = RuleTrace(section=section, rule=rule.name, fired=False, reason="", condition=rule.when)
    if rule.when is not None:
        trace.read = facts.read(rule.when)
        try:
            matched = compile_expr(rule.when).evaluate_bool(facts.cel)
        except ExpressionError as exc:
            trace.error = exc.message
            trace.reason = f"condition could not be evaluated: {exc.message}"
            return trace
        trace.reason = f"condition {'true' if matched else 'false'}{_values(trace.read)}"
        if not matched:
            return trace
    if rule.velocity is not None:
        v = rule.velocity
        window = format_duration(v.within)
        what = {"phone": "this phone", "address": "this address", "buyer": "this buyer"}[v.by]
        value = facts.hashes[v.by]
        if velocity is None:
            trace.reason = "velocity not checked (no counter given)"
            return trace
        if not value:
            trace.reason = f"no {v.by} on the order to count by"
            return trace
        count = int(velocity(v.by, value, v.within))
        trace.read[f"velocity.{v.by}"] = count
        trace.fired = count > v.more_than
        relation = "more than" if trace.fired else "not more than"
        trace.reason = f"{count} order{'s' if count != 1 else ''} to {what} within {window}, {relation} {v.more_than}"
        if rule.when is not None:
            trace.reason = f"condition true; {trace.reason}"
        return trace
    trace.fired = True
    return trace


def _values(read: Mapping[str, Any]) -> str:
    if not read:
        return ""
    def text(value: Any) -> str:
        if isinstance(value, str):
            return value[:12] + "…" if _HEX64.match(value) else value
        return json.dumps(value, ensure_ascii=False)

    shown = (f"{k}={text(v)}" for k, v in read.items())
    return ": " + ", ".join(shown)


def _add_review(outcome: RuleOutcome, reason: str) -> None:
    if reason not in outcome.review:
        outcome.review.append(reason)


def _apply(ruleset: RuleSet, rule: Rule, trace: RuleTrace, outcome: RuleOutcome, facts: _Facts,
           stock: StockLevels | None, decided_by: dict[str, str]) -> None:
    action = rule.action
    notes: list[str] = []

    def claim(decision: str) -> bool:
        if decision in decided_by:
            notes.append(f"{decision} already decided by {decided_by[decision]}")
            return False
        decided_by[decision] = rule.name
        trace.decided.append(decision)
        return True

    if action.review is not None:
        _add_review(outcome, action.review)
        trace.decided.append("review")
    if action.approve is not None and claim("approval"):
        a = action.approve
        outcome.approval = Approval(rule=rule.name, role=a.role, within=a.within, escalate_to=a.escalate_to,
                                    remind_after=a.remind_after)
    if action.warehouse is not None and claim("warehouse"):
        if action.warehouse == "auto":
            warehouse, split, note, problem = _choose_warehouse(ruleset, facts, stock)
            outcome.warehouse, outcome.split = warehouse, split
            notes.append(note)
            if problem:
                _add_review(outcome, problem)
        else:
            outcome.warehouse = action.warehouse
    if action.carrier is not None and claim("carrier"):
        if action.carrier == "cheapest":
            code, cost, note = _cheapest(ruleset, facts)
            notes.append(note)
            if code is None:
                _add_review(outcome, note)
            outcome.carrier, outcome.carrier_cost = code, cost
        else:
            outcome.carrier = action.carrier
            known = next((c for c in ruleset.carriers if c.code == action.carrier), None)
            if known is not None and known.serves(facts.province, facts.country, facts.temperature,
                                                  facts.weight_g) is None:
                outcome.carrier_cost = known.cost(facts.province, facts.country, facts.weight_g)
    if action.merge and claim("merge"):
        outcome.merge_key = merge_key(facts.order)
    if action.gift is not None:
        g = action.gift
        outcome.gifts.append(OrderLine(line_id=f"gift:{rule.name}", sku=g.sku, title=g.title, quantity=g.quantity,
                                       unit_price=Decimal("0"), total=Decimal("0"), is_gift=True))
        trace.decided.append("gift")
    if action.hold_until_paid and claim("hold_until_paid"):
        outcome.hold_until_paid = True
    if notes:
        trace.reason += "; " + "; ".join(notes)


def _cheapest(ruleset: RuleSet, facts: _Facts) -> tuple[str | None, Decimal | None, str]:
    best: tuple[Decimal, int, Carrier] | None = None
    for index, carrier in enumerate(ruleset.carriers):
        if carrier.serves(facts.province, facts.country, facts.temperature, facts.weight_g) is not None:
            continue
        cost = carrier.cost(facts.province, facts.country, facts.weight_g)
        if best is None or (cost, index) < best[:2]:
            best = (cost, index, carrier)
    weight = f"{facts.weight_g} g" + ("" if facts.weight_known else ", some weights unknown")
    if best is None:
        return None, None, (f"no carrier in the cost table serves {facts.province or facts.country} "
                            f"({facts.temperature}, {weight})")
    return best[2].code, best[0], f"cheapest carrier {best[2].code} at {_money_out(best[0])} ({weight})"


def _choose_warehouse(ruleset: RuleSet, facts: _Facts, stock: StockLevels | None
                      ) -> tuple[str | None, dict[str, list[SplitLine]] | None, str, str | None]:
    """``(warehouse, split, note, review reason)`` for ``warehouse: auto``.

    Eligible: ships to the receiver's region, stocks the line's category (when it lists categories
    and the line's category is known), keeps the line's temperature. The preferred (``priority``,
    then code) warehouse eligible for every line with enough stock for all of them is chosen; when
    there is none, the lines are split: each line to a warehouse already used if one can take it
    whole, else the preferred one that can, else its quantity across several.
    """
    order_of = ruleset.warehouse_order()
    regional = [w for w in order_of if not ruleset.warehouses[w].regions or
                _in_regions(ruleset.warehouses[w].regions, facts.province, facts.country)]

    def eligible(code: str, line: OrderLine) -> bool:
        w, sku = ruleset.warehouses[code], facts.sku[line.sku]
        if w.categories and sku.category and sku.category not in w.categories:
            return False
        return sku.temperature in w.temperature

    lines = facts.lines
    if not lines:
        return None, None, "no line left to ship", None
    for_line = {line.line_id: [w for w in regional if eligible(w, line)] for line in lines}
    homeless = [line.sku for line in lines if not for_line[line.line_id]]
    if homeless:
        where = facts.province or facts.country
        return None, None, "", f"no warehouse ships {', '.join(sorted(set(homeless)))} to {where}"
    for_all = [w for w in regional if all(w in for_line[line.line_id] for line in lines)]
    needed: dict[str, int] = {}
    for line in lines:
        needed[line.sku] = needed.get(line.sku, 0) + line.quantity
    if stock is None:
        if for_all:
            return for_all[0], None, f"warehouse {for_all[0]} (preferred eligible; stock not checked)", None
        split = _split(lines, for_line, None)
        assert split is not None  # without stock every line has a home
        return None, split, f"split over {', '.join(split)}: no warehouse takes every line", None
    levels: dict[str, dict[str, int]] = {sku: {w: int(n) for w, n in (stock(sku) or {}).items()} for sku in needed}
    for code in for_all:
        if all(levels[sku].get(code, 0) >= q for sku, q in needed.items()):
            return code, None, f"warehouse {code} has stock for every line", None
    split = _split(lines, for_line, levels)
    if split is None:
        short = []
        for sku, q in sorted(needed.items()):
            eligible_codes = {w for line in lines if line.sku == sku for w in for_line[line.line_id]}
            have = sum(max(0, levels[sku].get(w, 0)) for w in eligible_codes)
            if have < q:
                short.append(f"{sku} needs {q}, {have} available")
        return None, None, "", "stock short in the eligible warehouses: " + "; ".join(short)
    if len(split) == 1:
        code = next(iter(split))
        return code, None, f"warehouse {code} has stock for every line", None
    return None, split, f"split over {', '.join(split)}: no single warehouse has stock for every line", None


def _split(lines: list[OrderLine], for_line: dict[str, list[str]],
           levels: dict[str, dict[str, int]] | None) -> dict[str, list[SplitLine]] | None:
    left = {sku: dict(by_w) for sku, by_w in levels.items()} if levels is not None else None
    plan: dict[str, list[SplitLine]] = {}

    def available(sku: str, code: str) -> int:
        return 10**9 if left is None else max(0, left[sku].get(code, 0))

    def take(code: str, line: OrderLine, quantity: int) -> None:
        plan.setdefault(code, []).append(SplitLine(line_id=line.line_id, sku=line.sku, quantity=quantity))
        if left is not None:
            left[line.sku][code] = left[line.sku].get(code, 0) - quantity

    for line in lines:
        candidates = sorted(for_line[line.line_id], key=lambda w: (w not in plan, for_line[line.line_id].index(w)))
        whole = next((w for w in candidates if available(line.sku, w) >= line.quantity), None)
        if whole is not None:
            take(whole, line, line.quantity)
            continue
        wanted = line.quantity
        parts: list[tuple[str, int]] = []
        for code in candidates:
            n = min(wanted, available(line.sku, code))
            if n > 0:
                parts.append((code, n))
                wanted -= n
            if wanted == 0:
                break
        if wanted > 0:
            return None
        for code, n in parts:
            take(code, line, n)
    return plan
