"""SQL text handed to an ORM's query builder (CWE-89): a sink reached through methods of a query
object the rule must recognise first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from cwescan.detectors.static.context import Context
from cwescan.detectors.static.patterns import dotted
from cwescan.detectors.static.registry import Hit, rule

_CLAUSES = {"filter", "order_by", "group_by", "having", "distinct", "where"}


# ``filter`` is also the builtin and every collection's method: a call of it is no reason for
# the model to read a unit (triage), only for this rule to look at it
@rule("CWS089C", cwe="CWE-89", title="SQL text in an ORM query clause", severity="high", calls=_CLAUSES,
      minor_calls={"filter"})
def orm_text_clause(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A SQLAlchemy query clause given SQL text built from a non-constant value.

    **What.** ``session.query(User).filter("name = '%s'" % name)``, ``.order_by(f"{col}
    desc")``, ``.group_by``, ``.having``, ``.distinct``, ``.where`` on a query (a chain through
    ``query(...)``, ``Model.query`` or ``select(...)``, or a variable named ``query``) whose first argument is a string built
    with an f-string, ``+``, ``%`` or ``.format()`` from a value that is not a constant.

    **Why.** SQLAlchemy before 1.4 turns a plain string clause into literal SQL (``text()``):
    whoever controls the value rewrites the query (CWE-89). Keyword filters (``filter_by``,
    Django's ``filter(name=...)``) and column objects bind their values and are never flagged.

    **Confidence.** The source's: a request field 0.9, a plain function parameter 0.55 (one
    severity lower); untraced values are not flagged (column names the code itself chose).

    **Example.**

        users = session.query(User).filter("name = '{}'".format(name)).all()

    **Fix.** Compare columns: ``.filter(User.name == name)``, or ``text("name = :n")`` with
    ``.params(n=name)``.
    """
    if not isinstance(call.func, ast.Attribute) or not call.args or not _query(call.func.value):
        return
    hit = ctx.sink(call, call.args[0], "sql", f".{call.func.attr}()", flag_unknown=False, need_built=True,
                   what="SQL text in a query clause is built from a non-constant value")
    if hit:
        yield hit


def _query(node: ast.AST) -> bool:
    """A SQLAlchemy query: a chain through ``query(...)``, ``.query`` or ``select(...)``, or a
    variable named ``query``."""
    if isinstance(node, ast.Name):
        return node.id == "query"
    while isinstance(node, (ast.Call, ast.Attribute)):
        if isinstance(node, ast.Call):
            name = dotted(node.func) or ""
            if name.rpartition(".")[2] in ("query", "select"):
                return True
            node = node.func
        else:
            if node.attr == "query":
                return True
            node = node.value
    return False
