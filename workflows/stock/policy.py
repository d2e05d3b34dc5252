"""Allocation policies: how much of the central pool each channel is shown, as data.

A flow switches stock on with a ``stock`` block (:class:`FlowStock`); its ``policy`` (inline, or a
YAML file that ``load_flow`` reads) says per channel, with per-SKU overrides::

    defaults: {share: 100%, safety: 0}        # every channel unless said otherwise
    channels:
      tmall-main: {share: 60%, safety: 2}
      jd-main:    {share: 40%, buffer: 3, max: 200, warehouses: [qimen-sh]}
    skus:
      TD-SKU-0012:
        defaults: {safety: 5}
        channels: {jd-main: {share: 20%}}
    low_stock: {threshold: 10, skus: {TD-SKU-0012: 30}}

A channel's quantity, step by step (``explain`` prints each one):

1. available = Σ over its eligible warehouses of (on-hand − reserved − blocked)
2. − safety stock (kept back for the unexpected: damaged units, miscounts)
3. × share (floor): the channel's part of the pool
4. − buffer: a slow channel (minutes between its own sales and our seeing them) sells on stale
   figures; showing it a little less keeps it from selling units another channel already sold
5. at most ``max``; never below 0.

Reservations are always made against the whole pool, so shares and buffers decide only what is
shown: whatever a policy says, the pool never promises a unit twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

__all__ = ["ChannelRule", "Explanation", "FlowStock", "LowStock", "SkuRule", "StockPolicy", "Step",
           "explain", "load_policy", "parse_percent"]


def parse_percent(value: Any) -> Any:
    """``60%``, ``"60"``, ``0.6`` (a fraction when ≤ 1) → a fraction between 0 and 1."""
    if isinstance(value, bool):
        raise ValueError("a share, e.g. 60% (or 0.6)")
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
        if match:
            return float(match.group(1)) / 100
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a share; write e.g. 60% (or 0.6)") from None
    if isinstance(value, int | float):
        return float(value) / 100 if value > 1 else float(value)
    return value


def _percent_text(value: float) -> str:
    return f"{value * 100:g}%"


Share = Annotated[float, BeforeValidator(parse_percent), Field(ge=0, le=1),
                  PlainSerializer(_percent_text, return_type=str, when_used="json")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelRule(_Model):
    """One channel's allocation; unset fields come from the level below (defaults → channel → SKU)."""

    share: Share | None = Field(None, description="part of the pool shown, e.g. 60%")
    safety: int | None = Field(None, ge=0, description="units kept back from the pool before the share")
    buffer: int | None = Field(None, ge=0, description="units shown less on a slow channel")
    max: int | None = Field(None, ge=0, description="never show more than this")
    warehouses: list[str] | None = Field(None, description="warehouses (WMS connectors) this channel sells from; "
                                                            "default every warehouse of the flow")

    def over(self, base: ChannelRule) -> ChannelRule:
        """This rule with ``base`` filling what it leaves unset."""
        return ChannelRule(**{name: getattr(self, name) if getattr(self, name) is not None else getattr(base, name)
                              for name in type(self).model_fields})


class SkuRule(_Model):
    defaults: ChannelRule = Field(default_factory=ChannelRule)
    channels: dict[str, ChannelRule] = Field(default_factory=dict)


class LowStock(_Model):
    """Below ``threshold`` available units a SKU raises a low-stock signal (alert + task)."""

    threshold: int = Field(0, ge=0, description="0: no signal")
    skus: dict[str, int] = Field(default_factory=dict, description="per-SKU thresholds")

    def of(self, sku: str) -> int:
        return self.skus.get(sku, self.threshold)


class StockPolicy(_Model):
    defaults: ChannelRule = Field(default_factory=ChannelRule)
    channels: dict[str, ChannelRule] = Field(default_factory=dict)
    skus: dict[str, SkuRule] = Field(default_factory=dict)
    low_stock: LowStock = Field(default_factory=LowStock)

    def rule(self, channel: str, sku: str) -> ChannelRule:
        """The rule in force for ``channel`` and ``sku``: SKU+channel, SKU defaults, channel, defaults."""
        base = ChannelRule(share=1.0, safety=0, buffer=0)
        rule = self.defaults.over(base)
        rule = self.channels.get(channel, ChannelRule()).over(rule)
        sku_rule = self.skus.get(sku)
        if sku_rule is not None:
            rule = sku_rule.defaults.over(rule)
            rule = sku_rule.channels.get(channel, ChannelRule()).over(rule)
        return rule


class FlowStock(_Model):
    """A flow's ``stock`` block: orders of its sources reserve from the pool before the WMS gets them,
    and ``channels`` are shown their part of the pool."""

    warehouse: str = Field(description="WMS connector whose stock the flow's orders reserve")
    channels: list[str] = Field(default_factory=list, description="marketplace connectors shown the pool")
    policy: StockPolicy = Field(default_factory=StockPolicy, description="allocation policy (inline, or a "
                                "YAML file name that load_flow reads)")
    policy_file: str = Field("", description="where the policy was read from (informational)")
    recheck: int = Field(300, ge=5, description="seconds between reservation attempts of an out-of-stock order")

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    def warehouses_for(self, channel: str, sku: str) -> list[str]:
        return self.policy.rule(channel, sku).warehouses or [self.warehouse]


class Step(BaseModel):
    what: str
    value: int


class Explanation(BaseModel):
    """How one channel's quantity for one SKU was computed."""

    channel: str
    sku: str
    quantity: int
    steps: list[Step]
    rule: ChannelRule

    def text(self) -> str:
        width = max(len(s.what) for s in self.steps)
        return "\n".join(f"  {s.what.ljust(width)}  {s.value:>8}" for s in self.steps)


def explain(channel: str, sku: str, rule: ChannelRule, free: Mapping[str, int]) -> Explanation:
    """The quantity ``channel`` is shown for ``sku`` under ``rule``, given the free units
    (on-hand − reserved − blocked) per warehouse, with every step."""
    eligible = rule.warehouses or list(free)
    steps = [Step(what=f"free in {w}", value=max(0, free.get(w, 0))) for w in eligible]
    available = sum(s.value for s in steps)
    steps.append(Step(what="available", value=available))
    value = available
    if rule.safety:
        value = max(0, value - rule.safety)
        steps.append(Step(what=f"- safety stock {rule.safety}", value=value))
    share = 1.0 if rule.share is None else rule.share
    if share < 1:
        value = math.floor(value * share + 1e-9)
        steps.append(Step(what=f"x share {_percent_text(share)}", value=value))
    if rule.buffer:
        value = max(0, value - rule.buffer)
        steps.append(Step(what=f"- buffer {rule.buffer}", value=value))
    if rule.max is not None and value > rule.max:
        value = rule.max
        steps.append(Step(what=f"at most {rule.max}", value=value))
    value = max(0, value)
    steps.append(Step(what="shown", value=value))
    return Explanation(channel=channel, sku=sku, quantity=value, steps=steps, rule=rule)


def load_policy(path: Path | str) -> StockPolicy:
    """Read a policy file (YAML or JSON); a ValueError names the file and the problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the stock policy: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return StockPolicy.model_validate(data)


def free_units(levels: Iterable[Any]) -> dict[str, int]:
    """Free units per warehouse from store figures (objects with warehouse/on_hand/reserved/blocked)."""
    out: dict[str, int] = {}
    for level in levels:
        out[level.warehouse] = out.get(level.warehouse, 0) + max(0, level.on_hand - level.reserved - level.blocked)
    return out
