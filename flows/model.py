"""Declarative flows: what flows where, on which schedule, with which retry policy.

A flow names its sources (connector + stream, and the mapping that turns their documents into
canonical orders), its targets per capability (a WMS for outbound orders, an ERP for sales
documents) with optional routing rules (CEL over the canonical ``order``), its schedule and its
retry/timeout policy per step. Everything but ``name``, ``sources`` and ``targets`` has a default.

    flow = load_flow(Path("examples/flows/minimal.yaml"))   # FlowError lists every problem
    problems = check_against_registry(flow, store)          # connectors exist, capabilities fit
    flow.version()                                          # first 12 hex of the content hash

The version of a flow is its content: the sha256 of its canonical JSON. Saving a changed flow
creates a new version; runs in flight keep the version they started with.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from connectors.base import IngestDefaults, default_order_mapping
from mappings.expr import ExpressionError, compile_expr
from workflows.models import Route
from workflows.models import RouteRule as RouteStep
from workflows.order.routing import RoutingError, resolve_route
from workflows.stock.policy import FlowStock, load_policy

if typing.TYPE_CHECKING:
    from store import Store

__all__ = [
    "STEPS",
    "Flow",
    "FlowAccounting",
    "FlowError",
    "FlowSchedule",
    "FlowSource",
    "FlowTargets",
    "RouteRule",
    "Step",
    "StepPolicy",
    "check_against_registry",
    "format_duration",
    "load_flow",
    "parse_duration",
    "parse_flow",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_NAME_HINT = "use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit (at most 100)"


Step = Literal["ingest", "mapping", "wms", "erp", "writeback"]
STEPS: tuple[str, ...] = typing.get_args(Step)

TARGET_CAPABILITIES = {"wms": "outbound_orders", "erp": "sales_documents"}
INGEST_SETTINGS: tuple[str, ...] = ("lag", "overlap", "chunk")
"""Per-source ingest settings a flow may set; unset ones come from the connector kind's defaults."""
SOURCE_CAPABILITIES = {"orders": "orders"}


class FlowError(ValueError):
    """A flow file or definition is not valid; ``problems`` lists each one as ``field.path: message``."""

    def __init__(self, problems: list[str] | str, source: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            text = head + self.problems[0]
        else:
            text = f"{head}{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


# -- durations ------------------------------------------------------------------------------------
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def parse_duration(value: Any) -> Any:
    """``"30s"``, ``"1m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, ``"500ms"`` → timedelta; ints are seconds.

    Anything else is left for pydantic (a timedelta, float seconds, ISO 8601 ``PT1M``...).
    """
    if isinstance(value, bool):
        raise ValueError("a duration, e.g. 30s, 1m, 2h, 1d (or seconds as a number)")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return timedelta(seconds=float(text))
        if _DURATION.match(text):
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text)))
        if not text.upper().startswith("P"):
            raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 1m, 2h, 1d, 1h30m (or seconds)")
    return value


def format_duration(value: timedelta) -> str:
    """The compact form ``parse_duration`` reads back: ``1m``, ``1h30m``, ``2s``, ``500ms``."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    seconds, ms = divmod(total_ms, 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return sign + "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A timedelta written as ``30s``/``1m``/``2h``/``1d`` (or seconds); dumped to JSON in that form."""


def _context_values(value: Any) -> Any:
    """Context values are strings; YAML numbers (``sale_org: 100``) are taken as their text."""
    if isinstance(value, dict):
        return {k: (str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v) for k, v in value.items()}
    return value


Context = Annotated[dict[str, str], BeforeValidator(_context_values)]


def _check_name(value: str | None, what: str = "name") -> str | None:
    if value is not None and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid {what}: {_NAME_HINT}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- the model ------------------------------------------------------------------------------------
class FlowSource(_Model):
    """Where documents come from: a registered connector and one of its streams."""

    connector: str = Field(description="name of a registered connector with the 'orders' capability")
    stream: Literal["orders"] = "orders"
    mapping: str | None = Field(
        None, description="order mapping spec; default by the connector's kind: taobao_order for taobao, "
                          "else {kind}_order"
    )
    channel: str = Field("", description="channel of the business key; default the connector's kind")
    shop: str = Field("", description="shop of the business key; default as the mapping spec decides")
    lag: Duration | None = Field(None, description="stay this far behind now; default the connector kind's")
    overlap: Duration | None = Field(None, description="re-read this much before the cursor; default the kind's")
    chunk: Duration | None = Field(None, description="one ingest activity per chunk; default the kind's")

    @field_validator("connector")
    @classmethod
    def _connector(cls, value: str) -> str:
        return _check_name(value, "connector name")  # type: ignore[return-value]

    @field_validator("lag", "overlap")
    @classmethod
    def _not_negative(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("chunk")
    @classmethod
    def _chunk(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(minutes=1):
            raise ValueError("at least 1 minute")
        return value

    @model_serializer(mode="wrap")
    def _omit_unset_ingest(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave unset ingest settings out of dumps, so that flows written before they existed
        keep their content hash (their version) and their schedules are not replaced at upgrade."""
        data = handler(self)
        for name in INGEST_SETTINGS:
            if data.get(name) is None:
                data.pop(name, None)
        return data

    def mapping_for(self, kind: str) -> str:
        """The mapping spec this source uses when its connector is of ``kind``."""
        return self.mapping or default_order_mapping(kind)

    def ingest_settings(self, kind: str) -> IngestDefaults:
        """lag/overlap/chunk/window of this source's ingest: what the flow sets, else the kind's defaults.

        The defaults live on the connector class (``OrderSource.ingest_defaults``) because how late
        a platform indexes changes, and how big a window its API answers quickly, is a property of
        the platform; a flow overrides them only where it knows better.
        """
        from connectors import connector_class
        from connectors.errors import ConfigurationError

        try:
            defaults = getattr(connector_class(kind), "ingest_defaults", None) or IngestDefaults()
        except ConfigurationError:
            defaults = IngestDefaults()
        chosen = defaults.model_copy(update={n: getattr(self, n) for n in INGEST_SETTINGS
                                             if getattr(self, n) is not None})
        # a checkpoint window wider than the chunk would never checkpoint inside it
        return chosen.model_copy(update={"window": min(chosen.window, chosen.chunk)})


class RouteRule(_Model):
    """When ``when`` (CEL over ``order``, the canonical order) is true, send the order here instead."""

    when: str = Field(description="CEL condition over `order`, e.g. order.receiver.address.province == '上海市'")
    wms: str | None = Field(None, description="WMS connector for matching orders (default: targets.wms)")
    erp: str | None = Field(None, description="ERP connector for matching orders (default: targets.erp)")
    context: Context = Field(default_factory=dict, description="merged over the flow's context")

    @field_validator("when")
    @classmethod
    def _compile(cls, value: str) -> str:
        try:
            expr = compile_expr(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        unknown = sorted(expr.names - {"order"})
        if unknown:
            raise ValueError(f"unknown name {', '.join(map(repr, unknown))}: conditions read `order` only "
                             f"(expression: {value})")
        return value

    @field_validator("wms", "erp")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return _check_name(value, "connector name")


class FlowTargets(_Model):
    """Where orders go, per capability, by connector name; ``routes`` override per order."""

    wms: str | None = Field(None, description="WMS connector (capability outbound_orders)")
    erp: str | None = Field(None, description="ERP connector (capability sales_documents)")
    wms_mapping: str = "qimen_deliveryorder"
    erp_mapping: str = "kingdee_sale_order"
    routes: list[RouteRule] = Field(
        default_factory=list, description="tried in order; the first match overrides wms/erp/context"
    )

    @field_validator("wms", "erp")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return _check_name(value, "connector name")

    @model_validator(mode="after")
    def _one_target(self) -> FlowTargets:
        if not self.wms and not self.erp:
            raise ValueError("name at least one target: wms or erp (or both)")
        return self


_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_CRON_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(\d+))?$")


def _check_cron(expr: str) -> str:
    text = " ".join(expr.split())
    if text.lower() in _CRON_MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"{expr!r}: a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
                         f"got {len(fields)}")
    for text_field, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text_field.lower().split(","):
            match = _CRON_ITEM.match(item)
            if not match:
                raise ValueError(f"{expr!r}: bad {what} field {text_field!r}")
            base, step = match.groups()
            if step is not None and int(step) == 0:
                raise ValueError(f"{expr!r}: step 0 in the {what} field")
            if base == "*":
                continue
            for part in base.split("-"):
                number = names.get(part) if part in names else (int(part) if part.isdigit() else None)
                if number is None or not low <= number <= high:
                    raise ValueError(f"{expr!r}: {what} {part!r} is out of range {low}-{high}")
    return text


class FlowSchedule(_Model):
    """When the flow pulls: ``every`` (at least 1 minute) or a 5-field ``cron``; ``webhooks`` for pushes."""

    every: Duration | None = Field(None, description="interval, e.g. 1m, 15m, 2h, 1d; at least 1 minute")
    cron: str | None = Field(None, description="5-field cron, UTC, e.g. '*/10 * * * *'")
    webhooks: bool = Field(False, description="the sources push (POST /hooks/{connector}); without every/cron: "
                                             "push only, no polling")

    @field_validator("every")
    @classmethod
    def _at_least_a_minute(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(minutes=1):
            raise ValueError("at least 1 minute")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else _check_cron(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> FlowSchedule:
        if self.every is not None and self.cron is not None:
            raise ValueError("give either every or cron, not both")
        if self.every is None and self.cron is None and not self.webhooks:
            raise ValueError("give every (e.g. 5m) or cron, or set webhooks: true for a push-only flow")
        return self


class StepPolicy(_Model):
    """Timeout and retry of one step (a Temporal activity): exponential back-off between attempts."""

    timeout: Duration = Field(timedelta(minutes=2), description="per attempt (start-to-close)")
    initial_interval: Duration = timedelta(seconds=1)
    max_interval: Duration = timedelta(minutes=5)
    max_attempts: int = Field(0, ge=0, description="0 = unlimited")

    @field_validator("timeout", "initial_interval", "max_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _intervals(self) -> StepPolicy:
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must be at least initial_interval")
        return self


class FlowAccounting(_Model):
    """After shipment: the ERP's sales outbound per package and a voucher per shipped order."""

    outbound: str | None = Field(None, description="ERP connector with sales_outbound (Kingdee, Yonyou); "
                                                   "default targets.erp when it has that capability")
    vouchers: list[str] = Field(default_factory=list, description="voucher targets: the Beancount ledger "
                                                                  "connector, Kingdee GL_VOUCHER...")
    fees: str = Field("", description="fee file (commission rates, logistics fees); '' = the shipped default")

    @field_validator("outbound")
    @classmethod
    def _outbound(cls, value: str | None) -> str | None:
        return _check_name(value, "connector name")


def _default_schedule() -> FlowSchedule:
    return FlowSchedule(every=timedelta(minutes=5))


class Flow(_Model):
    """A declarative sync job. See docs/flows.md."""

    name: str = Field(description="unique name, lower-case letters, digits, '-', '_', '.'")
    description: str = ""
    sources: list[FlowSource] = Field(min_length=1)
    rules: str | None = Field(None, description="name of a stored rule set (tongdao rules apply FILE) decided "
                                                 "on every order before release (docs/rules.md)")
    targets: FlowTargets
    context: Context = Field(default_factory=dict, description="values for mapping specs' `var`")
    schedule: FlowSchedule = Field(default_factory=_default_schedule)
    retry: dict[Step, StepPolicy] = Field(default_factory=dict, description="per step; missing steps use defaults")
    enabled: bool = True
    backfill_page: Duration = Field(timedelta(hours=1), description="window per backfill page")
    backfill_pause: Duration = Field(timedelta(seconds=2), description="pause between backfill pages")
    stock: FlowStock | None = Field(None, description="reserve from the central stock pool and show the channels "
                                                      "their part of it (docs/stock.md)")

    notify: list[str] = Field(default_factory=list, description="notifier connectors (DingTalk/WeCom robots) told "
                                                                "of shipments, approvals, reminders")
    accounting: FlowAccounting | None = Field(None, description="ERP sales outbound and vouchers (docs/accounting.md)")

    @model_serializer(mode="wrap")
    def _omit_unset_stock(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Flows without the newer blocks dump as they did before those existed (same content hash,
        same version, schedules not replaced at upgrade)."""
        data = handler(self)
        for name in ("stock", "accounting"):
            if data.get(name) is None:
                data.pop(name, None)
        if not data.get("notify"):
            data.pop("notify", None)
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(_NAME_HINT)
        return value

    @field_validator("backfill_page")
    @classmethod
    def _page(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("at least 1 minute")
        return value

    @field_validator("backfill_pause")
    @classmethod
    def _pause(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("sources")
    @classmethod
    def _distinct(cls, value: list[FlowSource]) -> list[FlowSource]:
        seen: set[tuple[str, str]] = set()
        for source in value:
            key = (source.connector, source.stream)
            if key in seen:
                raise ValueError(f"{source.connector}/{source.stream} is listed twice")
            seen.add(key)
        return value

    # -- identity ---------------------------------------------------------------------------------
    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON: independent of key order, file format and duration spelling."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def version(self) -> str:
        """The flow's version: the first 12 hex characters of its content hash."""
        return self.content_hash()[:12]

    # -- behaviour --------------------------------------------------------------------------------
    def policy(self, step: Step | str) -> StepPolicy:
        """The timeout/retry policy of ``step`` (``retry.<step>`` or the defaults)."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
        return self.retry.get(step) or StepPolicy()  # type: ignore[call-overload]

    def connectors(self) -> list[str]:
        """Every connector the flow names (sources, targets, routes), without repeats, in order."""
        names = [s.connector for s in self.sources] + [self.targets.wms, self.targets.erp]
        if self.stock is not None:
            names += [self.stock.warehouse, *self.stock.channels]
        names += self.notify
        if self.accounting is not None:
            names += [self.accounting.outbound, *self.accounting.vouchers]
        for rule in self.targets.routes:
            names += [rule.wms, rule.erp]
        return list(dict.fromkeys(n for n in names if n))

    def route_rules(self) -> list[RouteStep]:
        """The routing rules as the order workflow carries them (in its ``Route``)."""
        return [RouteStep(when=r.when, wms=r.wms, erp=r.erp, context=dict(r.context)) for r in self.targets.routes]

    def route_for(self, order: Any) -> tuple[str | None, str | None, dict[str, str]]:
        """Where ``order`` goes: ``(wms, erp, context)``.

        ``order`` is the canonical order (a ``canonical.Order`` or its dict / JSON dump). Rules are
        tried in order; the first whose ``when`` is true overrides wms/erp (where it names them)
        and merges its context over the flow's. No match: the flow's targets and context.
        Raises ``FlowError`` naming the rule when a condition cannot be evaluated on this order.

        This calls the production routing (``workflows.order.routing.resolve_route``, run by the
        prepare activity) rather than a copy of it, so a preview cannot disagree with what the
        hub does to a real order.
        """
        route = Route(wms=self.targets.wms, erp=self.targets.erp, context=dict(self.context),
                      rules=self.route_rules())
        try:
            chosen = resolve_route(route, order)
        except RoutingError as exc:
            raise FlowError(str(exc), source=f"flow {self.name}") from exc
        return chosen.wms, chosen.erp, dict(chosen.context)


# -- loading --------------------------------------------------------------------------------------
def _unwrap(annotation: Any) -> Any:
    """Strip Annotated/Optional to the model or container underneath."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at a location of a Flow (for listing the fields allowed there)."""
    current: Any = Flow
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "[key]")
        message = str(err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = sorted(model.model_fields) if model else []
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            message = "unknown field" + (f" (did you mean {guess[0]!r}?)" if guess else "")
            if allowed:
                message += f"; allowed: {', '.join(allowed)}"
        elif err["type"] == "missing":
            message = "required"
        elif err["type"] == "literal_error" and err["loc"][-1:] == ("[key]",):
            message = f"unknown step {loc[-1]!r}; steps: {', '.join(STEPS)}"
        problem = f"{_path(loc)}: {message}" if loc else message
        if problem not in problems:
            problems.append(problem)
    return problems


def _read_policy_file(data: dict[str, Any], base: Path | None, source: str) -> None:
    """``stock.policy: FILE`` → the policy read from FILE (relative to the flow file), kept inline so
    that the policy is part of the flow's content: a changed policy is a new flow version."""
    stock = data.get("stock")
    if not isinstance(stock, dict) or not isinstance(stock.get("policy"), str):
        return
    name = stock["policy"]
    path = Path(name) if Path(name).is_absolute() or base is None else base / name
    try:
        policy = load_policy(path)
    except (ValueError, ValidationError) as exc:
        problems = _problems(exc) if isinstance(exc, ValidationError) else [str(exc)]
        raise FlowError([f"stock.policy ({path}): {p}" for p in problems], source) from None
    data["stock"] = {**stock, "policy": policy.model_dump(mode="json", exclude_defaults=True), "policy_file": name}


def parse_flow(data: Any, source: str = "", base: Path | None = None) -> Flow:
    """Validate a flow definition (a dict, e.g. from YAML, JSON or a stored definition); a stock
    policy given as a file name is read relative to ``base`` (default: the current directory)."""
    if not isinstance(data, dict):
        raise FlowError(f"a flow is a mapping with name, sources, targets...; got {type(data).__name__}", source)
    _read_policy_file(data, base, source)
    try:
        return Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowError(_problems(exc), source) from None


def load_flow(path: Path) -> Flow:
    """Read a flow file (YAML or JSON); ``FlowError`` lists every problem with its field path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(f"cannot read: {exc.strerror or exc}", str(path)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise FlowError(f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}", str(path)) from None
    return parse_flow(data, str(path), base=path.parent)


# -- against the registry -------------------------------------------------------------------------
def check_against_registry(flow: Flow, store: Store) -> list[str]:
    """What stops ``flow`` from running with the connectors registered in ``store`` (empty = ok).

    Every connector named exists; sources have the capability of their stream, WMS targets
    ``outbound_orders``, ERP targets ``sales_documents``; every mapping spec loads.
    """
    from connectors import connector_class
    from connectors.errors import ConfigurationError
    from mappings import load_spec

    problems: list[str] = []
    kinds: dict[str, str | None] = {}

    def kind_of(name: str) -> str | None:
        if name not in kinds:
            row = store.get_connector(name)
            kinds[name] = row.kind if row else None
        return kinds[name]

    def require(where: str, name: str, capability: str) -> str | None:
        kind = kind_of(name)
        if kind is None:
            problems.append(f"{where}: no connector named {name!r} is registered (tongdao connectors list)")
            return None
        try:
            capabilities = connector_class(kind).capabilities
        except ConfigurationError as exc:
            problems.append(f"{where}: connector {name!r}: {exc}")
            return None
        if capability not in capabilities:
            problems.append(f"{where}: connector {name!r} ({kind}) lacks the capability {capability!r} "
                            f"(it has: {', '.join(sorted(capabilities)) or 'none'})")
        return kind

    def spec(where: str, name: str) -> None:
        try:
            load_spec(name)
        except Exception as exc:  # SpecNotFoundError, SpecError, an expression that does not compile...
            problems.append(f"{where}: mapping spec {name!r} does not load: {exc}")

    for i, source in enumerate(flow.sources):
        kind = require(f"sources[{i}].connector", source.connector, SOURCE_CAPABILITIES[source.stream])
        if source.mapping is not None:
            spec(f"sources[{i}].mapping", source.mapping)
        elif kind is not None:
            spec(f"sources[{i}].mapping (default for {kind})", source.mapping_for(kind))
    targets = flow.targets
    for role, capability in TARGET_CAPABILITIES.items():
        name = getattr(targets, role)
        if name:
            require(f"targets.{role}", name, capability)
    for i, rule in enumerate(targets.routes):
        for role, capability in TARGET_CAPABILITIES.items():
            name = getattr(rule, role)
            if name:
                require(f"targets.routes[{i}].{role}", name, capability)
    if flow.rules and store.get_rule_set(flow.rules) is None:
        problems.append(f"rules: no rule set named {flow.rules!r} (tongdao rules apply FILE)")
    for i, name in enumerate(flow.notify):
        require(f"notify[{i}]", name, "notify")
    if flow.accounting is not None:
        if flow.accounting.outbound:
            require("accounting.outbound", flow.accounting.outbound, "sales_outbound")
        for i, name in enumerate(flow.accounting.vouchers):
            require(f"accounting.vouchers[{i}]", name, "vouchers")
    if flow.stock is not None:
        require("stock.warehouse", flow.stock.warehouse, "outbound_orders")
        for i, channel in enumerate(flow.stock.channels):
            require(f"stock.channels[{i}]", channel, "stock")
    uses_wms = bool(targets.wms) or any(r.wms for r in targets.routes)
    uses_erp = bool(targets.erp) or any(r.erp for r in targets.routes)
    if uses_wms:
        spec("targets.wms_mapping", targets.wms_mapping)
    if uses_erp:
        spec("targets.erp_mapping", targets.erp_mapping)
    return problems
