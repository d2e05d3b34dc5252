"""Compile a mapping spec once into a tree of field nodes; apply it to every payload.

Applying never stops at the first problem: every field is attempted, every failure is recorded as
a ``MappingError`` naming the target field, the source path that fed it and the offending value
(masked when it is personal data), and the result is then validated against the target model, with
pydantic's errors translated the same way. An operator sees in one go everything wrong with an
order, which is what makes quarantine and replay workable.

Per field the pipeline is: ``when`` → source (path | const | expr | var | fields | each) → enum →
lookup (→ fallback on a miss) → fallback (value empty) → default → required → type → scale →
format (or, for ``dict`` targets, JSON-ready rendering).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mappings.expr import CompiledExpr, ExpressionError, compile_expr
from mappings.lookups import Lookups
from mappings.spec import (
    FieldRule,
    PathStep,
    SpecDocument,
    SpecError,
    SpecNotFoundError,
    check_document,
    key_text,
    parse_path,
    path_text,
    read_document,
    resolve_timezone,
)

__all__ = [
    "SPECS_DIR", "MappingError", "MappingResult", "MappingSpec", "SpecError", "SpecNotFoundError", "load_spec",
    "mask", "parse_spec",
]

SPECS_DIR = Path(__file__).resolve().parent / "specs"
"""Where ``load_spec("taobao_order")`` looks."""

MAX_VALUE_CHARS = 80
_PERSONAL = re.compile(r"mobile|phone|tel(?![a-z])|name|address|street|nick|email|receiver_|buyer_", re.IGNORECASE)
_INT_RE = re.compile(r"^[+-]?\d+$")
_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_MISSING: Any = object()


# --------------------------------------------------------------------------- results


class MappingError(BaseModel):
    """One problem with one field of one payload."""

    target: str
    source_path: str = ""
    value: str | None = None
    message: str


@dataclass(slots=True)
class MappingResult:
    """``value`` is the model instance (or dict) when ``ok``; otherwise None and ``errors`` say why."""

    value: Any = None
    errors: list[MappingError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.value is not None


def mask(value: str) -> str:
    """Personal data in errors: keep enough to find the record (``138****78``), no more."""
    return value[:3] + "****" + value[-2:] if len(value) > 5 else "****"


def _display(value: Any, personal: bool) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else key_text(value) if isinstance(value, int | Decimal) else repr(value)
    if personal:
        return mask(text)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def is_personal(*labels: str) -> bool:
    """Whether a target or source path names personal data (phones, names, addresses)."""
    return any(_PERSONAL.search(label) for label in labels if label)


# --------------------------------------------------------------------------- run state


class _Failure(Exception):
    """A field failed; ``message`` may contain ``{value}``, filled with the (masked) value."""

    def __init__(self, message: str, value: Any = None, node: _Node | None = None) -> None:
        self.message, self.value, self.node = message, value, node


class _Run:
    """What one ``apply`` shares across its fields."""

    __slots__ = ("root", "context", "lookups", "errors", "index_maps")

    def __init__(self, root: Mapping[str, Any], context: Mapping[str, Any], lookups: Lookups | None) -> None:
        self.root, self.context, self.lookups = root, context, lookups
        self.errors: list[MappingError] = []
        self.index_maps: dict[str, list[int]] = {}


class _Scope:
    """The item being mapped (the payload, or one element of an ``each`` list) and its output."""

    __slots__ = ("run", "item", "out", "index", "src", "tgt")

    def __init__(self, run: _Run, item: Any, out: dict[str, Any], index: int | None, src: str, tgt: str) -> None:
        self.run, self.item, self.out, self.index, self.src, self.tgt = run, item, out, index, src, tgt

    def variables(self) -> dict[str, Any]:
        """What expressions see. Built on demand: most fields have no expression."""
        names = {"item": self.item, "src": self.item, "root": self.run.root, "out": self.out,
                 "context": self.run.context}
        if self.index is not None:
            names["index"] = self.index
        return names


def _join(prefix: str, text: str) -> str:
    if not prefix:
        return text
    if not text:
        return prefix
    return prefix + text if text.startswith("[") else f"{prefix}.{text}"


def _get(value: Any, steps: tuple[PathStep, ...]) -> Any:
    """Follow a path; anything absent (a missing key, an index out of range, a scalar) is None."""
    for step in steps:
        if type(step) is str:
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(step)
            else:
                return None
        elif type(value) is list:
            try:
                value = value[step]
            except IndexError:
                return None
        else:
            return None
        if value is None:
            return None
    return value


def _empty(value: Any) -> bool:
    return value is None or value == ""


# --------------------------------------------------------------------------- coercion


def _to_string(node: _Node, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return key_text(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise _Failure(f"expected text, got {type(value).__name__}", value)


def _to_int(node: _Node, value: Any) -> int:
    if isinstance(value, bool):
        raise _Failure("expected a whole number, got true/false", value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise _Failure("not a whole number", value)


def _to_decimal(node: _Node, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise _Failure("expected a decimal number, got true/false", value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str) and _DECIMAL_RE.match(value.strip()):
        result = Decimal(value.strip())
    else:
        raise _Failure("not a decimal number", value)
    if not result.is_finite():
        raise _Failure("not a finite decimal number", value)
    return result


def _to_bool(node: _Node, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Failure("not a boolean (true/false, yes/no, 1/0)", value)


def _parse_datetime(node: _Node, value: Any) -> datetime:
    """Source time → aware UTC datetime; naive values are read in the field's or spec's zone."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime.combine(value, time())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= 100_000_000_000 else value  # epoch ms or s
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Failure("epoch time out of range", value) from None
    elif isinstance(value, str):
        result = _parse_time_text(node, value.strip(), value)
    else:
        raise _Failure(f"expected a date-time, got {type(value).__name__}", value)
    if result.tzinfo is None or result.utcoffset() is None:
        if node.in_tz is None:
            raise _Failure("date-time without a zone; set timezone on the field or source_timezone", value)
        result = result.replace(tzinfo=node.in_tz)
    return result.astimezone(UTC)


def _parse_time_text(node: _Node, text: str, raw: Any) -> datetime:
    try:
        if node.parse is not None:
            return datetime.strptime(text, node.parse)
        return datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        expected = node.parse or "ISO 8601 or yyyy-MM-dd HH:mm:ss"
        raise _Failure(f"not a date-time ({expected})", raw) from None


def _to_datetime(node: _Node, value: Any) -> datetime:
    return _parse_datetime(node, value)


def _to_date(node: _Node, value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value.strip()) == 10 and node.parse is None:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise _Failure("not a date (yyyy-MM-dd)", value) from None
    return _parse_datetime(node, value).astimezone(node.out_tz).date()


def _to_list(node: _Node, value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise _Failure(f"expected a list, got {type(value).__name__}", value)


def _to_object(node: _Node, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise _Failure(f"expected an object, got {type(value).__name__}", value)


_COERCERS: dict[str, Callable[[_Node, Any], Any]] = {
    "string": _to_string, "int": _to_int, "decimal": _to_decimal, "bool": _to_bool,
    "datetime": _to_datetime, "date": _to_date, "list": _to_list, "object": _to_object,
}


def _json_ready(value: Any) -> Any:
    """Outbound documents go over the wire as JSON/XML: no Decimal or datetime objects in them."""
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


# --------------------------------------------------------------------------- nodes


class _SpecContext:
    """Spec-wide settings a node needs while compiling."""

    def __init__(self, doc: SpecDocument) -> None:
        self.source_tz = resolve_timezone(doc.source_timezone) if doc.source_timezone else None
        self.target_tz = resolve_timezone(doc.target_timezone) if doc.target_timezone else None


class _Node:
    """One compiled field rule. Attributes are resolved once so that ``run`` only branches."""

    __slots__ = (
        "name", "label", "kind", "when", "from_root", "steps", "const", "expr", "var_steps", "children",
        "filter", "enum", "enum_default", "has_enum_default", "lookup", "on_missing", "fallback", "default",
        "has_default", "required", "coerce", "parse", "in_tz", "out_tz", "quantum", "format", "number_places",
        "personal", "static_source", "translates", "plain",
    )

    def __init__(self, name: str, label: str, rule: FieldRule, ctx: _SpecContext) -> None:
        self.name, self.label, self.kind = name, label, rule.source_key
        self.when: CompiledExpr | None = compile_expr(rule.when) if rule.when else None
        self.from_root, self.steps = parse_path(rule.path or rule.each) if (rule.path or rule.each) else (False, ())
        self.const = rule.const
        self.expr: CompiledExpr | None = compile_expr(rule.expr) if rule.expr else None
        self.var_steps: tuple[str, ...] = tuple(rule.var.split(".")) if rule.var else ()
        self.children = _compile_fields(rule.fields, f"{label}.", ctx) if rule.fields is not None else ()
        self.filter: CompiledExpr | None = compile_expr(rule.filter) if rule.filter else None
        self.enum, self.enum_default, self.has_enum_default = rule.enum, rule.enum_default, rule.has("enum_default")
        self.lookup, self.on_missing = rule.lookup, rule.on_missing or "error"
        self.fallback = _Node(name, f"{label}.fallback", rule.fallback, ctx) if rule.fallback else None
        self.default, self.has_default, self.required = rule.default, rule.has("default"), rule.required
        self.coerce = _COERCERS.get(rule.type) if rule.type else None
        self.parse = rule.parse
        field_tz = resolve_timezone(rule.timezone) if rule.timezone else None
        self.in_tz: tzinfo | None = field_tz or ctx.source_tz
        self.out_tz: tzinfo = field_tz or ctx.target_tz or ctx.source_tz or UTC
        self.quantum = Decimal(1).scaleb(-rule.scale) if rule.scale is not None else None
        self.format = rule.format
        places = re.fullmatch(r"\.(\d{1,2})f", rule.format or "")
        self.number_places = Decimal(1).scaleb(-int(places.group(1))) if places else None
        self.translates = self.enum is not None or self.lookup is not None
        self.plain = self.coerce is None and self.quantum is None and self.format is None
        self.static_source = self._source_text("")
        self.personal = is_personal(label, self.static_source)

    # -- descriptions for errors --

    def _source_text(self, prefix: str) -> str:
        if self.kind in ("path", "each"):
            return _join("" if self.from_root else prefix, path_text(self.steps))
        if self.kind == "var":
            return "context." + ".".join(self.var_steps)
        if self.kind == "expr":
            text = self.expr.source if self.expr else ""
            return "expr: " + (text if len(text) <= 60 else text[:59] + "…")
        if self.kind == "fields":
            return prefix
        return ""

    def source_path(self, scope: _Scope) -> str:
        return self._source_text(scope.src)

    def _error(self, scope: _Scope, failure: _Failure) -> None:
        node = failure.node or self
        source = node.source_path(scope)
        personal = self.personal or node.personal
        shown = _display(failure.value, personal)
        message = failure.message.replace("{value}", repr(shown)) if "{value}" in failure.message else failure.message
        scope.run.errors.append(
            MappingError(target=_join(scope.tgt, self.name), source_path=source, value=shown, message=message)
        )

    # -- evaluation --

    def run(self, scope: _Scope) -> Any:
        """The field's final value, or ``_MISSING`` when it is left out (condition false, empty, failed)."""
        try:
            if self.when is not None and not self.when.evaluate_bool(scope.variables()):
                return _MISSING
            value = self.value(scope)
        except _Failure as failure:
            self._error(scope, failure)
            return _MISSING
        except ExpressionError as exc:
            self._error(scope, _Failure(f"{exc.message} (expression: {exc.source})"))
            return _MISSING
        return _MISSING if value is None else value

    def value(self, scope: _Scope) -> Any:
        """Source → transformations; raises ``_Failure``. Written for the common case of a plain path."""
        if self.kind == "path":
            value = _get(scope.run.root if self.from_root else scope.item, self.steps)
        else:
            value = self.source(scope)
        if value is None or value == "":
            return self._when_empty(value, scope)
        if self.translates:
            if self.enum is not None:
                value = self._map_enum(value)
            if self.lookup is not None:
                value, used_fallback = self._look_up(value, scope)
                if value is None or value == "":
                    return self._when_empty(value, scope, try_fallback=not used_fallback)
        return value if self.plain else self._finish(value)

    def _when_empty(self, value: Any, scope: _Scope, try_fallback: bool = True) -> Any:
        if try_fallback and self.fallback is not None:
            value = self.fallback.value(scope)
        if (value is None or value == "") and self.has_default:
            value = self.default
        if value is None or value == "":
            if self.required:
                raise _Failure("required, but the source" + (" and its fallback are" if self.fallback else " is")
                               + " empty", value, self)
            return None if value == "" and self.coerce not in (None, _to_string) else value
        return value if self.plain else self._finish(value)

    def _finish(self, value: Any) -> Any:
        if self.coerce is not None:
            try:
                value = self.coerce(self, value)
            except _Failure as failure:
                failure.node = failure.node or self
                raise
        if self.quantum is not None:
            value = value.quantize(self.quantum, ROUND_HALF_UP)
        if self.format is not None:
            return self._formatted(value)
        return value

    def _formatted(self, value: Any) -> str:
        if isinstance(value, datetime):
            return value.astimezone(self.out_tz).strftime(self.format)  # type: ignore[arg-type]
        if isinstance(value, date):
            return value.strftime(self.format)  # type: ignore[arg-type]
        if self.number_places is not None and isinstance(value, Decimal | int):
            return format(Decimal(value).quantize(self.number_places, ROUND_HALF_UP), "f")
        return format(value, self.format)  # type: ignore[arg-type]

    def source(self, scope: _Scope) -> Any:
        kind = self.kind
        if kind == "path":
            return _get(scope.run.root if self.from_root else scope.item, self.steps)
        if kind == "const":
            return self.const
        if kind == "expr":
            return self.expr.evaluate(scope.variables())  # type: ignore[union-attr]
        if kind == "var":
            return _get(scope.run.context, self.var_steps)
        if kind == "fields":
            child = _Scope(scope.run, scope.item, {}, scope.index, scope.src, _join(scope.tgt, self.name))
            return _map_fields(self.children, child)
        return self._each(scope)

    def _map_enum(self, value: Any) -> Any:
        key = key_text(value)
        if key in self.enum:  # type: ignore[operator]
            return self.enum[key]  # type: ignore[index]
        if self.has_enum_default:
            return self.enum_default
        known = ", ".join(list(self.enum)[:12]) + (", …" if len(self.enum) > 12 else "")  # type: ignore[arg-type]
        raise _Failure(f"unknown value {{value}}; expected one of: {known}", value, self)

    def _look_up(self, value: Any, scope: _Scope) -> tuple[Any, bool]:
        key = key_text(value)
        lookups = scope.run.lookups
        found = lookups.get(self.lookup, key) if lookups is not None else None  # type: ignore[arg-type]
        if found is not None:
            return found, False
        if self.fallback is not None:
            alternative = self.fallback.value(scope)
            if _empty(alternative):
                raise _Failure(f"{self._miss_reason(lookups)} for {{value}}, and the fallback "
                               f"({self.fallback.source_path(scope)}) is empty", key, self)
            return alternative, True
        if self.on_missing == "keep":
            return value, False
        if self.on_missing == "null":
            return None, False
        raise _Failure(f"{self._miss_reason(lookups)} for {{value}}", key, self)

    def _miss_reason(self, lookups: Lookups | None) -> str:
        if lookups is None:
            return f"no lookups given (table {self.lookup!r})"
        has_table = getattr(lookups, "has_table", None)
        if has_table is not None and not has_table(self.lookup):
            return f"lookup table {self.lookup!r} is not loaded"
        return f"no {self.lookup!r} cross-reference"

    def _each(self, scope: _Scope) -> list[dict[str, Any]] | None:
        items = _get(scope.run.root if self.from_root else scope.item, self.steps)
        if items is None:
            return None
        if isinstance(items, Mapping):
            items = [items]  # XML-to-dict conversions turn a one-element list into the element
        if not isinstance(items, list):
            raise _Failure(f"expected a list, got {type(items).__name__}", items, self)
        base_src = _join("" if self.from_root else scope.src, path_text(self.steps))
        tgt = _join(scope.tgt, self.name)
        result: list[dict[str, Any]] = []
        kept: list[int] = []
        for i, element in enumerate(items):
            if self.filter is not None and not self._keep(scope, element, i, f"{tgt}[?]"):
                continue
            child = _Scope(scope.run, element, {}, len(result), f"{base_src}[{i}]", f"{tgt}[{len(result)}]")
            result.append(_map_fields(self.children, child))
            kept.append(i)
        if len(kept) != len(items):
            scope.run.index_maps[tgt] = kept
        return result

    def _keep(self, scope: _Scope, element: Any, index: int, tgt: str) -> bool:
        child = _Scope(scope.run, element, {}, index, scope.src, tgt)
        try:
            return self.filter.evaluate_bool(child.variables())  # type: ignore[union-attr]
        except ExpressionError as exc:
            scope.run.errors.append(MappingError(target=tgt, source_path=f"filter: {exc.source}",
                                                 message=f"{exc.message} (item {index} left out)"))
            return False


def _compile_fields(rules: dict[str, FieldRule], prefix: str, ctx: _SpecContext) -> tuple[_Node, ...]:
    return tuple(_Node(name, f"{prefix}{name}", rule, ctx) for name, rule in rules.items())


def _map_fields(nodes: tuple[_Node, ...], scope: _Scope) -> dict[str, Any]:
    out = scope.out
    for node in nodes:
        value = node.run(scope)
        if value is not _MISSING:
            out[node.name] = value
    return out


# --------------------------------------------------------------------------- the spec


def _loc_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, str(part))
    return text


class MappingSpec:
    """A loaded, validated and compiled spec. Immutable and safe to share between threads."""

    def __init__(self, document: SpecDocument, model: type[BaseModel] | None, content_hash: str, source: str,
                 default_name: str) -> None:
        self.document = document
        self.name: str = document.name or default_name
        self.description = document.description
        self.target: str = document.target
        self.model = model
        self.content_hash = content_hash
        self.source = source
        self.lookups: tuple[str, ...] = tuple(document.lookups)
        self._nodes = _compile_fields(document.fields, "", _SpecContext(document))

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of ``content_hash``: what logs and the CLI show."""
        return self.content_hash[:12]

    def __repr__(self) -> str:
        return f"MappingSpec({self.name!r} → {self.target} @ {self.short_hash})"

    def apply(self, payload: Mapping[str, Any], lookups: Lookups | None = None,
              context: Mapping[str, Any] | None = None) -> MappingResult:
        """Map one payload. Never raises for bad data: problems come back as ``errors``."""
        if not isinstance(payload, Mapping):
            return MappingResult(errors=[MappingError(target="", message=f"payload must be an object, "
                                                      f"got {type(payload).__name__}")])
        run = _Run(payload, context if context is not None else {}, lookups)
        out = _map_fields(self._nodes, _Scope(run, payload, {}, None, "", ""))
        if self.model is None:
            return MappingResult(value=None if run.errors else _json_ready(out), errors=run.errors)
        try:
            value = self.model.model_validate(out)
        except ValidationError as exc:
            run.errors.extend(self._model_errors(exc, run))
            return MappingResult(errors=run.errors)
        return MappingResult(value=None if run.errors else value, errors=run.errors)

    # -- model validation errors --

    def _model_errors(self, exc: ValidationError, run: _Run) -> list[MappingError]:
        """Translate pydantic's errors; skip those an engine error already explains."""
        reported = [e.target for e in run.errors]
        errors: list[MappingError] = []
        for err in exc.errors(include_url=False):
            target = _loc_text(tuple(err["loc"]))
            if any(target == t or target.startswith((t + ".", t + "[")) for t in reported):
                continue
            source = self.source_path_for(tuple(err["loc"]), run.index_maps)
            value = None if err["type"] == "missing" else err.get("input")
            if isinstance(value, Mapping | list):
                value = None
            errors.append(MappingError(target=target, source_path=source,
                                       value=_display(value, is_personal(target, source)), message=err["msg"]))
        return errors

    def source_path_for(self, loc: tuple[Any, ...], index_maps: Mapping[str, list[int]] | None = None) -> str:
        """The source path that feeds a target location, e.g. ``('lines', 1, 'sku')`` →
        ``orders.order[1].sku_id``; derived from the spec, so it costs nothing until an error."""
        nodes, node, src, tgt = self._nodes, None, "", ""
        for part in loc:
            if isinstance(part, int):
                if node is None or node.kind != "each":
                    return ""
                mapped = (index_maps or {}).get(tgt)
                index = mapped[part] if mapped is not None and part < len(mapped) else part
                src = f"{_join('' if node.from_root else src, path_text(node.steps))}[{index}]"
                tgt = f"{tgt}[{part}]"
                nodes, node = node.children, None
                continue
            node = next((n for n in nodes if n.name == part), None)
            if node is None:
                return ""
            tgt = _join(tgt, str(part))
            if node.kind == "fields":
                nodes = node.children
        if node is None:
            return src
        return node._source_text(src)


# --------------------------------------------------------------------------- loading


_CACHE: dict[tuple[str, str], MappingSpec] = {}


def _resolve(path_or_name: str | Path) -> Path:
    if isinstance(path_or_name, Path) or "/" in path_or_name or path_or_name.endswith((".yaml", ".yml")):
        path = Path(path_or_name)
        if not path.is_file():
            raise SpecNotFoundError(f"mapping spec file not found: {path}")
        return path
    name = path_or_name.strip()
    for candidate in (name, name.replace("-", "_")):
        for suffix in (".yaml", ".yml"):
            path = SPECS_DIR / f"{candidate}{suffix}"
            if path.is_file():
                return path
    available = ", ".join(sorted(p.stem for p in SPECS_DIR.glob("*.y*ml")))
    raise SpecNotFoundError(f"no mapping spec named {name!r} in {SPECS_DIR} (available: {available})")


def parse_spec(text: str | bytes, name: str = "inline", source: str = "<string>") -> MappingSpec:
    """Load a spec from text (tests, previews of an unsaved spec); cached by content like files."""
    data = text.encode() if isinstance(text, str) else text
    digest = hashlib.sha256(data).hexdigest()
    key = (digest, name)
    spec = _CACHE.get(key)
    if spec is None:
        document = read_document(data, source)
        model = check_document(document, source)
        spec = MappingSpec(document, model, digest, source, name)
        if len(_CACHE) > 256:  # edited specs leave old versions behind; keep the cache bounded
            _CACHE.clear()
        _CACHE[key] = spec
    return spec


def load_spec(path_or_name: str | Path) -> MappingSpec:
    """A spec by name (file stem under ``mappings/specs``, e.g. ``taobao_order``) or by path.

    The file is re-read on each call (a few KB) so an edited spec takes effect at once; compiling
    happens only when its content hash is new. Raises ``SpecNotFoundError`` or ``SpecError``.
    """
    path = _resolve(path_or_name)
    return parse_spec(path.read_bytes(), name=path.stem, source=str(path))

