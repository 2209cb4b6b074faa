"""rmap header expressions (`rmap_relevance`, `rmap_omit`, `parkey_relevance`), evaluated by walking `ast`.

crds compiles these with Python and `eval`s them against the dataset header after screening the
tree with its MappingVerifier. Here the same grammar is accepted (names, constants, tuples,
lists, dicts, comparisons, and/or/not, unary minus, conditional expressions) and interpreted
node by node: nothing is ever compiled or executed.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crdswatch.contexts.astparse import parse
from crdswatch.errors import ExprError, ExprSyntaxError

__all__ = ["Expr", "ExprError", "ExprSyntaxError", "compile_expr"]


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_MAX_NODES = 500  # rmap expressions are one-liners; bound the walk anyway


@dataclass(frozen=True, slots=True)
class Expr:
    source: str
    tree: ast.expr

    @property
    def constant(self) -> bool:
        """True for `True`/`False`-like expressions that read no header value."""
        return isinstance(self.tree, ast.Constant)

    def names(self) -> set[str]:
        """Every header name the expression reads."""
        return {node.id for node in ast.walk(self.tree) if isinstance(node, ast.Name)}

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        return _eval(self.tree, names)


def compile_expr(source: str) -> Expr:
    """Parse and screen `source`; raises ExprSyntaxError for anything outside the grammar."""
    try:
        module = parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExprSyntaxError(f"invalid expression {source!r}: {exc.msg}") from None
    for count, node in enumerate(ast.walk(module.body)):
        if count >= _MAX_NODES:
            raise ExprSyntaxError(f"expression too long: {source[:60]!r}")
        if not isinstance(node, _ALLOWED):
            raise ExprSyntaxError(f"{type(node).__name__} is not allowed in expression {source!r}")
    return Expr(source, module.body)


_ALLOWED = (
    ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, ast.Dict, ast.Compare, ast.BoolOp, ast.And,
    ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.IfExp, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.In, ast.NotIn,
)


def _eval(node: ast.expr, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ExprError(f"name {node.id!r} is not defined")
    if isinstance(node, ast.Tuple):
        return tuple(_eval(elt, names) for elt in node.elts)
    if isinstance(node, ast.List):
        return [_eval(elt, names) for elt in node.elts]
    if isinstance(node, ast.Dict):
        return {_eval(k, names) if k is not None else None: _eval(v, names) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BoolOp):
        # Python semantics: the deciding operand itself is the value.
        value: Any = None
        for operand in node.values:
            value = _eval(operand, names)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, names)
        if isinstance(node.op, ast.Not):
            return not operand
        try:
            return -operand
        except TypeError as exc:
            raise ExprError(str(exc)) from None
    if isinstance(node, ast.IfExp):
        return _eval(node.body, names) if _eval(node.test, names) else _eval(node.orelse, names)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, names)
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError as exc:
                raise ExprError(str(exc)) from None
            if not ok:
                return False
            left = right
        return True
    raise ExprSyntaxError(f"{type(node).__name__} is not allowed")
