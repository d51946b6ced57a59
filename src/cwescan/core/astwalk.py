"""``walk``: the nodes of ``ast.walk``, in its order, at about two thirds of its cost.

``ast.walk`` runs three nested generators per node (``iter_child_nodes`` over ``iter_fields``);
the file stage walks every file's tree several times (folding, the data flow's indexes,
triage), so the generators were a tenth of its time. Callers that stop early or depend on the
order get exactly what ``ast.walk`` gives: breadth first, children in field order, a node's
children taken before the node is yielded.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator

_AST = ast.AST


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk(node)``, faster."""
    todo = deque((node,))
    pop, push = todo.popleft, todo.append
    while todo:
        node = pop()
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, _AST):
                push(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, _AST):
                        push(item)
        yield node
