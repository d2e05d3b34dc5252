"""Rule-set decisions and human decisions on an order (free of personal data)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field

from workflows.models import GiftLine


class RulesInput(BaseModel):
    order_key: str
    ruleset: str
    workflow_id: str = ""


class ApprovalNeed(BaseModel):
    rule: str
    role: str
    within: timedelta
    escalate_to: str = ""
    remind_after: timedelta | None = None


class RuleDecision(BaseModel):
    """What the flow's rule set decided for one version of the order (its trace is in the activity's
    result, so the history says which rules fired and why)."""

    ruleset: str
    version: str
    fired: list[str] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict, description="rule -> why it fired (values masked)")
    review: list[str] = Field(default_factory=list)
    approval: ApprovalNeed | None = None
    warehouse: str = ""
    wms: str = Field("", description="the warehouse named is a registered WMS connector: the order goes there")
    carrier: str = ""
    gifts: list[GiftLine] = Field(default_factory=list)
    merge_key: str = ""
    split: dict[str, dict[str, int]] = Field(default_factory=dict, description="warehouse -> sku -> units")


class Decision(BaseModel):
    """A person's answer to a pending approval or manual review (a Temporal update: who, how, why)."""

    action: Literal["approve", "reject", "edit"]
    actor: str = Field(min_length=1)
    comment: str = ""
    role: str = Field("", description="the business role the person acts in (director, cfo...)")
    warehouse: str = Field("", description="edit: ship from this warehouse code")
    carrier: str = Field("", description="edit: ship with this carrier code")


class DecisionResult(BaseModel):
    accepted: bool
    stage: str
    message: str = ""


class DecisionRecord(BaseModel):
    order_key: str
    workflow_id: str
    kinds: list[str]
    actor: str
    action: str
    comment: str = ""
    role: str = ""
