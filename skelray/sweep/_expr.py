"""A small, safe arithmetic language for dependent search values.

``{expr: "0.1 * train.batch_size / 256"}`` or ``{expr: "0.05 if model.kwargs.pa_count > 3 else 0.1"}``:
names are dotted config paths, read from the trial's config after the other leaves are sampled.
Only literals, arithmetic, comparisons, ``and/or/not``, ``x if c else y`` and a few pure
functions are allowed; anything else (attribute calls, subscripts, lambdas) is rejected when
the sweep is loaded, so nothing a sweep file says can run arbitrary code.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "abs": abs, "round": round, "int": int, "float": float,
    "log": math.log, "log2": math.log2, "log10": math.log10, "exp": math.exp, "sqrt": math.sqrt,
}
_BIN = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_CMP = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


class ExprError(ValueError):
    """The expression is not in the allowed language."""


def _dotted(node: ast.AST) -> str | None:
    """``train.batch_size`` parses as Attribute(Name(train), batch_size): turn it back into a path."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def parse(text: str) -> tuple[ast.Expression, list[str]]:
    """Parse and check ``text``; return the tree and the config paths it reads, in order."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse expression: {exc.msg}") from None
    refs: list[str] = []
    _check(tree.body, refs)
    return tree, refs


def _check(node: ast.AST, refs: list[str]) -> None:
    path = _dotted(node)
    if path is not None:
        if path in ("True", "False", "None"):
            return
        if path not in refs:
            refs.append(path)
        return
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ExprError(f"constant {node.value!r} is not allowed")
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        _check(node.left, refs), _check(node.right, refs)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, refs)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, refs)
    elif isinstance(node, ast.Compare) and all(type(op) in _CMP for op in node.ops):
        for v in [node.left, *node.comparators]:
            _check(v, refs)
    elif isinstance(node, ast.IfExp):
        for v in (node.test, node.body, node.orelse):
            _check(v, refs)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for v in node.elts:
            _check(v, refs)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        if node.keywords:
            raise ExprError(f"{node.func.id}() takes positional arguments only")
        for v in node.args:
            _check(v, refs)
    else:
        allowed = ", ".join(sorted(FUNCTIONS))
        raise ExprError(f"'{ast.unparse(node)}' is not allowed; use numbers, config paths, arithmetic, "
                        f"comparisons, 'x if c else y' and {allowed}")


def evaluate(tree: ast.Expression, lookup: Callable[[str], Any]) -> Any:
    """Evaluate a checked tree; ``lookup(path)`` returns a config value."""
    return _eval(tree.body, lookup)


def _eval(node: ast.AST, lookup: Callable[[str], Any]) -> Any:
    path = _dotted(node)
    if path is not None:
        return {"True": True, "False": False, "None": None}[path] if path in ("True", "False", "None") \
            else lookup(path)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, lookup), _eval(node.right, lookup))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, lookup))
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, lookup) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, lookup)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, lookup)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, lookup) if _eval(node.test, lookup) else _eval(node.orelse, lookup)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(v, lookup) for v in node.elts]
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](*(_eval(a, lookup) for a in node.args))  # type: ignore[attr-defined]
    raise ExprError(f"cannot evaluate '{ast.unparse(node)}'")
