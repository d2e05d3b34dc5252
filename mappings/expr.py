"""The expression language of mappings and business rules: CEL, behind a small adapter.

CEL (Common Expression Language) was chosen by measurement (``bench/expr_languages.py``, figures
in ``docs/mappings.md``): it is the fastest of the three candidates on realistic order payloads,
and it is not Turing-complete, has no I/O and no user-defined functions, so a spec written by an
integration engineer cannot hang a worker or reach outside the payload.

The adapter exists for three reasons:

* **Compile once.** ``compile_expr`` parses and checks an expression once and caches it; a syntax
  error or an unknown function is reported at load time, with the expression text.
* **Cheap evaluation.** The binding converts every variable into CEL values on each call, which
  costs microseconds per key. A compiled expression knows which top-level keys of each variable
  it reads (``root.payment`` reads only ``payment``) and passes only those, so evaluating an
  expression over a 100-key trade costs the same as over a 2-key one.
* **Python types in, Python types out.** CEL has no decimal and no naive datetime: ``Decimal``
  becomes a double, a naive ``datetime`` is taken as UTC, a ``date`` as midnight UTC, enums their
  value, pydantic models their ``model_dump()``. Results come back as plain Python values
  (timestamps as aware ``datetime``, optionals unwrapped).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any

import cel
from cel import stdlib as cel_stdlib
from pydantic import BaseModel

__all__ = [
    "CompiledExpr",
    "ExpressionCompileError",
    "ExpressionError",
    "ExpressionEvalError",
    "compile_expr",
    "from_cel",
    "to_cel",
]

# Functions the Rust core implements natively (operators aside); registering a Python version of
# one of these would only slow it down.
NATIVE_FUNCTIONS = frozenset(
    {
        "size", "has", "all", "exists", "exists_one", "map", "filter", "int", "uint", "double", "string",
        "bytes", "timestamp", "duration", "dyn", "type", "contains", "startsWith", "endsWith", "matches",
        "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours",
        "getMinutes", "getSeconds", "getMilliseconds", "of", "none", "hasValue", "value", "orValue",
    }
)
NAMESPACES = frozenset({"math", "sets", "base64", "strings", "lists", "optional"})
"""Names that prefix namespaced functions (``math.greatest``); CEL reports them as variables."""

_EXTRA_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: fn
    for library in cel_stdlib.EXTENSIONS.values()
    for name, fn in library.items()
    if name.rsplit(".", 1)[-1] not in NATIVE_FUNCTIONS
}
"""cel-go's extension libraries (strings, math, lists, sets, encoders) as the binding ships them."""

_BY_SHORT_NAME: dict[str, list[str]] = {}
for _name in _EXTRA_FUNCTIONS:
    _BY_SHORT_NAME.setdefault(_name.rsplit(".", 1)[-1], []).append(_name)

_MEMBER_ACCESS = re.compile(r"(?<!\w)([A-Za-z_]\w*)(\s*\.\s*([A-Za-z_]\w*)(\s*\()?)?")
_COMPREHENSION_VAR = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_PARSE_PREFIX = re.compile(r"^Failed to parse expression '.*?':\s*", re.DOTALL)
_POSITION = re.compile(r"^ERROR: <input>:(\d+):(\d+): (.*)$")

MAX_SOURCE_LENGTH = 4000
"""Expressions are rules, not programs; a very long one is almost certainly a mistake."""


class ExpressionError(ValueError):
    """An expression could not be compiled or evaluated; carries the expression text."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{message} (expression: {source})")


class ExpressionCompileError(ExpressionError):
    """Syntax error, unknown function, or an expression that is not a usable rule."""


class ExpressionEvalError(ExpressionError):
    """Evaluation failed: a missing key, a type mismatch (CEL never coerces), division by zero..."""


def to_cel(value: Any) -> Any:
    """Convert a Python value into something the CEL binding accepts, recursively.

    Fast path first: JSON payloads are made of str/int/float/bool/None/dict/list only.
    """
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return value
    if kind is dict:
        return {k: to_cel(v) for k, v in value.items()}
    if kind is list:
        return [to_cel(v) for v in value]
    return _to_cel_slow(value)


def _to_cel_slow(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return to_cel(value.value)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, BaseModel):
        return to_cel(value.model_dump())
    if isinstance(value, Mapping):
        return {k: to_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_cel(v) for v in value]
    return value


def from_cel(value: Any) -> Any:
    """Unwrap CEL-only result types (optionals) into plain Python values."""
    if isinstance(value, cel.OptionalValue):
        return value.value() if value.has_value() else None
    return value


def _projection(source: str, names: frozenset[str]) -> dict[str, frozenset[str] | None]:
    """Top-level keys read from each variable, or None when the variable is used as a whole.

    Deliberately conservative: any use of ``name`` not of the form ``name.key`` (indexing,
    ``size(name)``, a method call ``name.exists(...)``, even inside a string literal) means "pass
    it all". Extra keys (``name.key`` in a string or on a shadowing comprehension variable) only
    make the projection larger, never wrong.
    """
    keys: dict[str, set[str] | None] = {}
    for match in _MEMBER_ACCESS.finditer(source):
        name, member, key, call = match.group(1), match.group(2), match.group(3), match.group(4)
        if name not in names:
            continue
        if member is None or call is not None:
            keys[name] = None
        elif name not in keys:
            keys[name] = {key}
        elif keys[name] is not None:
            keys[name].add(key)  # type: ignore[union-attr]
    return {name: (frozenset(k) if k is not None else None) for name, k in keys.items()}


def _parse_message(text: str) -> str:
    """CEL's parser reports ``ERROR: <input>:1:5: Syntax error: ...`` plus a caret drawing; keep one line."""
    text = _PARSE_PREFIX.sub("", text).strip()
    first = text.split("\n", 1)[0]
    match = _POSITION.match(first)
    if match:
        line, column, message = match.groups()
        where = f"column {column}" if line == "1" else f"line {line}, column {column}"
        return f"{message} (at {where})"
    return first


class CompiledExpr:
    """A compiled CEL expression: evaluate it as often as needed, it is immutable and thread-safe."""

    __slots__ = ("source", "names", "functions", "_program", "_plan", "_functions")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ExpressionCompileError(source, _parse_message(str(exc))) from None
        refs = self._program.references()
        bound = set(_COMPREHENSION_VAR.findall(source))
        self.names: frozenset[str] = frozenset(refs["variables"]) - bound - NAMESPACES
        """Free variable names the expression reads (what the caller must provide)."""
        self.functions: frozenset[str] = frozenset(f for f in refs["functions"] if f[:1].isalpha())
        unknown = sorted(f for f in self.functions if f not in NATIVE_FUNCTIONS and f not in _BY_SHORT_NAME)
        if unknown:
            raise ExpressionCompileError(source, f"unknown function {', '.join(map(repr, unknown))}")
        self._functions = {
            full: _EXTRA_FUNCTIONS[full] for short in self.functions for full in _BY_SHORT_NAME.get(short, ())
        }
        # Comprehension variables are passed too when the context has them: `item` may be both
        # the context's item and, inside `.map(item, ...)`, a bound name; CEL scopes them itself.
        referenced = frozenset(refs["variables"]) - NAMESPACES
        projection = _projection(source, referenced)
        self._plan: tuple[tuple[str, frozenset[str] | None, bool], ...] = tuple(
            (name, projection.get(name), name in self.names) for name in sorted(referenced)
        )

    def __repr__(self) -> str:
        return f"CompiledExpr({self.source!r})"

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate with ``context`` as the variables; only what the expression reads is converted.

        Raises ``ExpressionEvalError`` (with the expression text) on any failure, including a
        variable the context does not provide.
        """
        variables: dict[str, Any] = {}
        for name, keys, free in self._plan:
            if name not in context:
                if not free:
                    continue
                raise ExpressionEvalError(self.source, f"unknown name {name!r}")
            value = context[name]
            if keys is not None and type(value) is dict:
                value = {k: value[k] for k in keys if k in value}
            variables[name] = to_cel(value)
        try:
            ctx = cel.Context(variables, self._functions) if self._functions else cel.Context(variables)
            result = self._program.execute(ctx)
        except KeyError as exc:
            raise ExpressionEvalError(self.source, f"no such key: {exc.args[0]!r} (guard it with has())") from None
        except Exception as exc:  # the binding raises RuntimeError/TypeError/ValueError/ZeroDivisionError
            raise ExpressionEvalError(self.source, str(exc).split("\n", 1)[0]) from None
        return from_cel(result)

    def evaluate_bool(self, context: Mapping[str, Any]) -> bool:
        """Evaluate a condition; anything but a boolean result is an error, not "truthy"."""
        result = self.evaluate(context)
        if not isinstance(result, bool):
            raise ExpressionEvalError(self.source, f"condition must be true or false, got {type(result).__name__}")
        return result


@lru_cache(maxsize=4096)
def compile_expr(source: str) -> CompiledExpr:
    """Compile (and cache) an expression; raises ``ExpressionCompileError`` naming the expression."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionCompileError(str(source), "empty expression")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionCompileError(source[:80] + "...", f"expression longer than {MAX_SOURCE_LENGTH} characters")
    return CompiledExpr(source)
