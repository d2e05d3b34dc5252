"""Declarative mappings: YAML specs that turn platform payloads into canonical models and back.

    from mappings import DictLookups, load_spec

    spec = load_spec("taobao_order")                 # validated, compiled once, cached by content hash
    result = spec.apply(trade, lookups=DictLookups({"sku": {...}}), context={"shop": "my-shop"})
    if result.ok:
        order = result.value                         # canonical.Order
    else:
        for error in result.errors:                  # target, source_path, value (masked), message
            ...

The expression language (CEL) is reusable on its own: ``from mappings.expr import compile_expr``.
See docs/mappings.md for the spec reference.
"""

from mappings.engine import SPECS_DIR, MappingError, MappingResult, MappingSpec, load_spec, mask, parse_spec
from mappings.expr import CompiledExpr, ExpressionCompileError, ExpressionError, ExpressionEvalError, compile_expr
from mappings.lookups import DictLookups, Lookups
from mappings.spec import FieldRule, SpecDocument, SpecError, SpecNotFoundError

__all__ = [
    "SPECS_DIR",
    "CompiledExpr",
    "DictLookups",
    "ExpressionCompileError",
    "ExpressionError",
    "ExpressionEvalError",
    "FieldRule",
    "Lookups",
    "MappingError",
    "MappingResult",
    "MappingSpec",
    "SpecDocument",
    "SpecError",
    "SpecNotFoundError",
    "compile_expr",
    "load_spec",
    "mask",
    "parse_spec",
]
