"""The mapping spec: its YAML form, its pydantic schema, and every check that can run at load time.

A spec is configuration written by integration engineers, often under time pressure on a sale
day. Everything that can be known before the first order arrives is checked when the spec is
loaded: structure, exactly one value source per field, types, formats, time zones, expressions
(syntax, functions, names), lookup tables, and, for model targets, that each target field exists,
that enum-valued fields only receive allowed values and that every required field is mapped.
All problems are reported together, each naming the field (``lines.sku.fallback: ...``).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mappings.expr import ExpressionError, compile_expr

FieldType = Literal["string", "int", "decimal", "bool", "datetime", "date", "list", "object"]
OnMissing = Literal["error", "keep", "null"]

SOURCE_KEYS = ("path", "const", "expr", "var", "fields", "each")
EXPR_NAMES = frozenset({"item", "src", "root", "out", "context"})
"""Names every expression sees; ``index`` is added inside ``each``."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PATH_TOKEN = re.compile(r"""\s*(?:\.?([A-Za-z_$][\w$-]*)|\[\s*(-?\d+)\s*\]|\[\s*(['"])(.*?)\3\s*\])""")
_OFFSET_RE = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)
_NUMBER_FORMAT_RE = re.compile(r"^\.(\d{1,2})f$")

# Zones without daylight saving that marketplaces use, for hosts without a tz database (slim images).
_FIXED_ZONES = {
    "Asia/Shanghai": 8, "Asia/Chongqing": 8, "Asia/Hong_Kong": 8, "Asia/Macau": 8, "Asia/Taipei": 8,
    "Asia/Singapore": 8, "Asia/Kuala_Lumpur": 8, "Asia/Tokyo": 9, "Asia/Seoul": 9, "Asia/Kolkata": 5.5,
    "UTC": 0, "Etc/UTC": 0, "GMT": 0,
}


class SpecError(ValueError):
    """A spec failed to load; ``issues`` lists every problem, each naming its field."""

    def __init__(self, source: str, issues: list[str]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"invalid mapping spec {source}:\n{lines}")


class SpecNotFoundError(FileNotFoundError):
    """No spec file under that name or path."""


# --------------------------------------------------------------------------- paths


PathStep = str | int


@lru_cache(maxsize=2048)
def parse_path(text: str) -> tuple[bool, tuple[PathStep, ...]]:
    """``a.b[0]['x-y']`` → (from_root, steps). ``$root.`` starts at the payload root.

    Cached because the same few paths are parsed for every spec reload.
    """
    source = text.strip()
    if not source:
        raise ValueError("empty path")
    steps: list[PathStep] = []
    pos = 0
    while pos < len(source):
        match = _PATH_TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"bad path {text!r} at position {pos + 1}")
        name, index, _, quoted = match.groups()
        if name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(quoted)
        pos = match.end()
    from_root = bool(steps) and steps[0] == "$root"
    if from_root:
        steps = steps[1:]
        if not steps:
            raise ValueError(f"bad path {text!r}: $root needs a field after it")
    if any(isinstance(s, str) and s.startswith("$") for s in steps):
        raise ValueError(f"bad path {text!r}: only $root may start with '$'")
    return from_root, tuple(steps)


def path_text(steps: tuple[PathStep, ...]) -> str:
    """Render steps back as ``a.b[0].c`` (used in error messages as the source path)."""
    out: list[str] = []
    for step in steps:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif re.fullmatch(r"[A-Za-z_][\w-]*", step):
            out.append(f".{step}" if out else step)
        else:
            out.append(f"[{step!r}]")
    return "".join(out)


# --------------------------------------------------------------------------- time zones


@lru_cache(maxsize=64)
def resolve_timezone(name: str) -> tzinfo:
    """An IANA zone (``Asia/Shanghai``), ``UTC``, or a fixed offset (``+08:00``, ``GMT+8``)."""
    text = name.strip()
    match = _OFFSET_RE.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta > timedelta(hours=14):
            raise ValueError(f"offset out of range: {name!r}")
        return timezone(delta if sign == "+" else -delta)
    if text.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        if text in _FIXED_ZONES:
            return timezone(timedelta(hours=_FIXED_ZONES[text]), text)
        raise ValueError(f"unknown time zone {name!r}") from None


# --------------------------------------------------------------------------- the schema


def key_text(key: Any) -> str:
    """Enum keys and lookup keys compare as text: YAML ``1:`` and JSON ``"1"`` must match."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    if isinstance(key, Decimal):
        return format(key, "f")
    return str(key)


class FieldRule(BaseModel):
    """How one target field gets its value. Exactly one source: path, const, expr, var, fields, each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # sources
    path: str | None = Field(None, description="dotted path in the current item; $root.x reaches the payload root")
    const: Any = Field(None, description="a literal value")
    expr: str | None = Field(None, description="a CEL expression over item/src, root, out, context (and index)")
    var: str | None = Field(None, description="a value of the caller's context, e.g. shop or warehouse_code")
    fields: dict[str, FieldRule] | None = Field(None, description="a nested object (or, with each, one list item)")
    each: str | None = Field(None, description="path of a source list; fields maps each item")
    filter: str | None = Field(None, description="with each: CEL condition an item must meet to be mapped")
    # transformations, in the order they apply
    enum: dict[str, Any] | None = Field(None, description="source value → target value")
    enum_default: Any = Field(None, description="target value for a source value not in enum")
    lookup: str | None = Field(None, description="cross-reference table the value is translated through")
    on_missing: OnMissing | None = Field(None, description="lookup without an entry: error (default), keep, null")
    fallback: FieldRule | None = Field(None, description="rule used when the value is empty or the lookup misses")
    default: Any = Field(None, description="value when the source is empty (None or '')")
    required: bool = Field(False, description="empty after fallback and default is an error")
    type: FieldType | None = None
    parse: str | None = Field(None, description="strptime pattern for datetime/date sources")
    timezone: str | None = Field(None, description="zone of naive source times and of formatted output times")
    scale: int | None = Field(None, ge=0, le=10, description="decimal places (half-up) for decimals")
    format: str | None = Field(None, description="strftime pattern (datetime/date) or format spec like .2f")
    when: str | None = Field(None, description="CEL condition; the field is left out when false")
    description: str | None = Field(None, description="free text for readers of the spec")

    @model_validator(mode="before")
    @classmethod
    def _null_is_a_word(cls, data: Any) -> Any:
        """``on_missing: null`` is YAML's null; the author meant the word."""
        if isinstance(data, dict) and "on_missing" in data and data["on_missing"] is None:
            return {**data, "on_missing": "null"}
        return data

    @field_validator("enum", mode="before")
    @classmethod
    def _enum_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key_text(k): v for k, v in value.items()}
        return value

    @property
    def source_key(self) -> str:
        """Which of the source keys this rule uses (valid rules have exactly one)."""
        return next(key for key in SOURCE_KEYS if self.has(key))

    def has(self, key: str) -> bool:
        """Whether ``key`` was given (``const: null`` and ``default: null`` count as given)."""
        if key in ("const", "default", "enum_default"):
            return key in self.model_fields_set
        if key == "fields" and self.each is not None:
            return False  # with each, fields describes the item, it is not a second source
        return getattr(self, key) is not None

    @model_validator(mode="after")
    def _check(self) -> FieldRule:
        problems = list(_rule_problems(self))
        if problems:
            raise ValueError("\n".join(problems))  # split again by _describe, one issue per line
        return self


def _rule_problems(rule: FieldRule) -> Iterator[str]:
    """Local consistency of one rule (what does not need the rest of the spec)."""
    sources = [key for key in SOURCE_KEYS if rule.has(key)]
    if not sources:
        yield f"no value source: give exactly one of {', '.join(SOURCE_KEYS)}"
    elif len(sources) > 1:
        yield f"{len(sources)} value sources ({', '.join(sources)}): give exactly one of {', '.join(SOURCE_KEYS)}"
    if rule.each is not None and rule.fields is None:
        yield "each needs fields describing one item"
    if rule.filter is not None and rule.each is None:
        yield "filter only applies with each"
    if rule.type is not None and (rule.fields is not None or rule.each is not None):
        yield "type does not apply to fields/each (they always build an object/a list)"
    if rule.has("enum_default") and rule.enum is None:
        yield "enum_default needs enum"
    if rule.on_missing is not None and rule.lookup is None:
        yield "on_missing only applies with lookup"
    if rule.on_missing not in (None, "error") and rule.fallback is not None:
        yield f"on_missing: {rule.on_missing} and fallback contradict each other; keep one"
    if rule.parse is not None and rule.type not in ("datetime", "date"):
        yield "parse needs type: datetime or date"
    if rule.scale is not None and rule.type != "decimal":
        yield "scale needs type: decimal"
    if rule.timezone is not None and rule.type not in ("datetime", "date"):
        yield "timezone needs type: datetime or date"
    yield from _format_problems(rule)
    for key in ("path", "each"):
        text = getattr(rule, key)
        if text is not None:
            try:
                parse_path(text)
            except ValueError as exc:
                yield f"{key}: {exc}"
    if rule.var is not None and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", rule.var):
        yield f"var: {rule.var!r} is not a context name like shop or warehouse.code"
    if rule.timezone is not None:
        try:
            resolve_timezone(rule.timezone)
        except ValueError as exc:
            yield f"timezone: {exc}"
    for key in ("expr", "when", "filter"):
        text = getattr(rule, key)
        if text is not None:
            try:
                compiled = compile_expr(text)
            except ExpressionError as exc:
                yield f"{key}: {exc.message} (expression: {text})"
                continue
            unknown = sorted(compiled.names - EXPR_NAMES - {"index"})
            if unknown:
                yield (f"{key}: unknown name {', '.join(map(repr, unknown))} "
                       f"(expressions see {', '.join(sorted(EXPR_NAMES | {'index'}))})")


def _format_problems(rule: FieldRule) -> Iterator[str]:
    if rule.format is None:
        return
    if rule.type in ("datetime", "date"):
        if "%" not in rule.format:
            yield f"format {rule.format!r} for a {rule.type} must be a strftime pattern like %Y-%m-%d %H:%M:%S"
        return
    if rule.type in ("decimal", "int"):
        try:
            format(Decimal("1") if rule.type == "decimal" else 1, rule.format)
        except ValueError:
            yield f"format {rule.format!r} is not a number format spec like .2f"
        return
    yield "format needs type: datetime, date, decimal or int"


class SpecDocument(BaseModel):
    """A mapping spec file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="defaults to the file stem")
    description: str = ""
    target: str = Field("dict", description="canonical.<Model> (validated) or dict (outbound documents)")
    source_timezone: str | None = Field(None, description="zone of naive datetimes in the source")
    target_timezone: str | None = Field(None, description="zone in which formatted datetimes are written")
    lookups: list[str] = Field(default_factory=list, description="cross-reference tables the spec uses")
    fields: dict[str, FieldRule] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise ValueError("use letters, digits, '_', '-' or '.' (e.g. taobao_order)")
        return value

    @field_validator("source_timezone", "target_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            resolve_timezone(value)
        return value


# --------------------------------------------------------------------------- YAML


class _SpecLoader(yaml.SafeLoader):
    """YAML with two traps closed: only true/false are booleans (a status ``NO`` stays text), and a
    duplicated key is an error instead of silently keeping the last one."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def read_document(text: str | bytes, source: str) -> SpecDocument:
    """Parse YAML and validate the schema; every problem is reported in one ``SpecError``."""
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise SpecError(source, ["the spec must be a mapping with at least name, target and fields"])
    try:
        return SpecDocument.model_validate(data)
    except ValidationError as exc:
        issues = [issue for error in exc.errors(include_url=False) for issue in _describe(error)]
        raise SpecError(source, issues) from None


def field_label(loc: tuple[Any, ...]) -> str:
    """``('fields','lines','fields','sku','fallback')`` → ``lines.sku.fallback``."""
    parts: list[str] = []
    skip = False
    for i, part in enumerate(loc):
        if skip:
            skip = False
            continue
        if part == "fields" and i + 1 < len(loc):
            parts.append(str(loc[i + 1]))
            skip = True
        else:
            parts.append(str(part))
    return ".".join(parts) or "(spec)"


def _describe(error: Any) -> list[str]:
    """One pydantic error → issues naming the field (a rule's own checks may report several)."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        known = FieldRule.model_fields if len(loc) > 1 else SpecDocument.model_fields
        return [f"{field_label(loc[:-1])}: unknown key {loc[-1]!r} (known: {', '.join(known)})"]
    if kind in ("model_type", "dict_type") and loc and loc[-1] != "fields":
        return [f"{field_label(loc)}: expected a rule like {{path: ...}}, got {error.get('input')!r}"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error", "string_type", "int_type", "bool_type", "int_parsing", "bool_parsing"):
        message += f" (got {error.get('input')!r})"
    return [f"{field_label(loc)}: {line}" for line in message.split("\n")]


# --------------------------------------------------------------------------- target models


def resolve_target(target: str) -> type[BaseModel] | None:
    """``dict`` → None; ``canonical.Order`` → the model class. Only canonical models are allowed:
    a spec must not make the hub import arbitrary code."""
    if target == "dict":
        return None
    module, _, name = target.partition(".")
    if module != "canonical" or not name.isidentifier():
        raise ValueError(f"{target!r}: use dict or canonical.<Model> (e.g. canonical.Order)")
    import canonical

    model = getattr(canonical, name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"{target!r}: canonical has no model {name!r}")
    return model


def _unwrap(annotation: Any) -> Any:
    """Strip Optional / Annotated down to the type that says what values are allowed."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


def _list_item(annotation: Any) -> Any | None:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) is list:
        return _unwrap(typing.get_args(annotation)[0])
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Enum)


class SpecChecker:
    """Checks that need the whole spec: declared lookups, expression names, the target model."""

    def __init__(self, doc: SpecDocument, model: type[BaseModel] | None) -> None:
        self.doc = doc
        self.model = model
        self.issues: list[str] = []

    def run(self) -> list[str]:
        self._walk(self.doc.fields, self.model, "", in_each=False)
        return self.issues

    def _walk(self, fields: dict[str, FieldRule], model: type[BaseModel] | None, prefix: str, in_each: bool) -> None:
        model_fields = model.model_fields if model is not None else None
        for name, rule in fields.items():
            label = f"{prefix}{name}"
            annotation = None
            if model_fields is not None:
                if name not in model_fields:
                    known = ", ".join(model_fields)
                    self.issues.append(f"{label}: not a field of {model.__name__} (fields: {known})")  # type: ignore[union-attr]
                    continue
                annotation = model_fields[name].annotation
            self._rule(rule, label, annotation, in_each, model_checks=model_fields is not None)
        if model_fields is not None:
            for name, info in model_fields.items():
                if info.is_required() and name not in fields:
                    self.issues.append(f"{prefix}{name}: required by {model.__name__} but not mapped")  # type: ignore[union-attr]

    def _rule(self, rule: FieldRule, label: str, annotation: Any, in_each: bool, model_checks: bool) -> None:
        for key in ("expr", "when", "filter"):
            text = getattr(rule, key)
            in_list = in_each or (key == "filter" and rule.each is not None)
            if text is not None and not in_list and "index" in compile_expr(text).names:
                self.issues.append(f"{label}.{key}: index is only defined inside each (the item's position)")
        if rule.lookup is not None and rule.lookup not in self.doc.lookups:
            self.issues.append(f"{label}.lookup: table {rule.lookup!r} is not declared in the spec's lookups")
        if rule.fallback is not None:
            if rule.fallback.fields is not None or rule.fallback.each is not None:
                self.issues.append(f"{label}.fallback: a fallback gives a value (path, const, expr or var)")
            self._rule(rule.fallback, f"{label}.fallback", annotation, in_each, model_checks)
        if model_checks:
            self._against_model(rule, label, annotation, in_each)
        elif rule.fields is not None:
            self._walk(rule.fields, None, f"{label}.", in_each or rule.each is not None)

    def _against_model(self, rule: FieldRule, label: str, annotation: Any, in_each: bool) -> None:
        kind = _unwrap(annotation)
        if rule.each is not None:
            item = _list_item(annotation)
            if item is None:
                self.issues.append(f"{label}: each builds a list, but the target field is not a list")
                return
            self._walk(rule.fields or {}, item if _is_model(item) else None, f"{label}.", in_each=True)
            return
        if rule.fields is not None:
            if not _is_model(kind):
                self.issues.append(f"{label}: fields builds an object, but the target field is not one")
                return
            self._walk(rule.fields, kind, f"{label}.", in_each)
            return
        enum_type = kind if _is_enum(kind) else _list_item(annotation)
        if _is_enum(enum_type):
            self._enum_values(rule, label, enum_type, is_list=not _is_enum(kind))

    def _enum_values(self, rule: FieldRule, label: str, enum_type: type[Enum], is_list: bool) -> None:
        allowed = {str(member.value) for member in enum_type}

        def check(value: Any, where: str) -> None:
            values = value if is_list and isinstance(value, list) else [value]
            for v in values:
                text = v.value if isinstance(v, Enum) else v
                if text is not None and str(text) not in allowed:
                    self.issues.append(f"{where}: {text!r} is not a valid {enum_type.__name__} "
                                       f"(allowed: {', '.join(sorted(allowed))})")

        if rule.has("const"):
            check(rule.const, f"{label}.const")
        if rule.has("default"):
            check(rule.default, f"{label}.default")
        if rule.has("enum_default"):
            check(rule.enum_default, f"{label}.enum_default")
        for key, value in (rule.enum or {}).items():
            check(value, f"{label}.enum[{key}]")


def check_document(doc: SpecDocument, source: str) -> type[BaseModel] | None:
    """Run the whole-spec checks; returns the target model. Raises ``SpecError`` listing all issues."""
    try:
        model = resolve_target(doc.target)
    except ValueError as exc:
        raise SpecError(source, [f"target: {exc}"]) from None
    issues = SpecChecker(doc, model).run()
    if issues:
        raise SpecError(source, issues)
    return model


__all__ = [
    "FieldRule",
    "FieldType",
    "SpecDocument",
    "SpecError",
    "SpecNotFoundError",
    "check_document",
    "field_label",
    "key_text",
    "parse_path",
    "path_text",
    "read_document",
    "resolve_target",
    "resolve_timezone",
]
