"""Conditions the data flow can decide from the code alone.

``num = 86`` then ``if 7 * 42 - num > 200: bar = "constant" else: bar = param``: the test is
always true, so ``bar`` is the constant afterwards, whatever ``param`` holds. The data flow
(``taint.py``) builds only the branch an ``if`` (or a conditional expression) always takes when
its test is made of literals and of names assigned one literal once in their function (or at
module level, for names the function does not assign). Anything else (a call, an attribute,
a name assigned twice) leaves the test undecided and both branches are followed, as before.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

from cwescan.detectors.static.patterns import walk_local

NOT_LITERAL = object()  # a name assigned something other than one literal
_LITERAL_TYPES = (bool, int, float, str)
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def literal_names(body: list[ast.stmt], params: list[str] = ()) -> dict[str, object]:
    """Every name ``body`` assigns (nested functions and classes excluded), mapped to its literal
    value when ``x = <literal>`` is its only assignment, else to NOT_LITERAL; parameters are
    NOT_LITERAL."""
    nodes = list(walk_local(body))
    literal_targets = {id(n.targets[0]): n.value.value for n in nodes
                       if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
                       and isinstance(n.value, ast.Constant) and type(n.value.value) in _LITERAL_TYPES}
    values: dict[str, object] = {p: NOT_LITERAL for p in params}
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            values[node.id] = NOT_LITERAL if node.id in values else literal_targets.get(id(node), NOT_LITERAL)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            values[node.name] = NOT_LITERAL  # a def binds its name
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            values.update({n: NOT_LITERAL for n in node.names})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            values.update({(a.asname or a.name).split(".")[0]: NOT_LITERAL for a in node.names})
    return values


def decide(test: ast.AST, literal: Callable[[str], object]) -> bool | None:
    """The truth value ``test`` always has, or None when the code does not fix it."""
    value = _value(test, literal, 0)
    return None if value is NOT_LITERAL else bool(value)


def _value(node: ast.AST, literal: Callable[[str], object], depth: int) -> object:
    if depth > 20:
        return NOT_LITERAL
    d = depth + 1
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) in _LITERAL_TYPES else NOT_LITERAL
    if isinstance(node, ast.Name):
        return literal(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        v = _value(node.operand, literal, d)
        if v is NOT_LITERAL or isinstance(node.op, ast.USub) and type(v) not in (int, float):
            return NOT_LITERAL
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, literal, d), _value(node.right, literal, d)
        if left is NOT_LITERAL or right is NOT_LITERAL:
            return NOT_LITERAL
        numbers = type(left) in (int, float) and type(right) in (int, float)
        if not (numbers or isinstance(node.op, ast.Add) and type(left) is type(right) is str):
            return NOT_LITERAL  # "%" formatting, "ab" * n: not worth deciding
        try:
            return _BINARY[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return NOT_LITERAL
    if isinstance(node, ast.Compare):
        left = _value(node.left, literal, d)
        result = True
        for op, comparator in zip(node.ops, node.comparators):
            right = _value(comparator, literal, d)
            if left is NOT_LITERAL or right is NOT_LITERAL or type(op) not in _COMPARE:
                return NOT_LITERAL
            try:
                result = result and _COMPARE[type(op)](left, right)
            except TypeError:
                return NOT_LITERAL
            left = right
        return result
    if isinstance(node, ast.BoolOp):
        values = [_value(v, literal, d) for v in node.values]
        if any(v is NOT_LITERAL for v in values):
            return NOT_LITERAL
        return all(values) if isinstance(node.op, ast.And) else any(values)
    return NOT_LITERAL
