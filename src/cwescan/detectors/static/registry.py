"""The rule registry: a rule is one decorated function whose docstring is its documentation.

    @rule("CWS089", cwe="CWE-89", title="SQL built from untrusted data", severity="critical",
          calls={"execute", "executemany"})
    def sql_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
        '''What it finds, why it matters, an example and the fix.'''

``node`` names the AST node type the rule inspects (``ast.Call`` by default); for calls,
``calls`` lists the last components of the callee names it cares about ("execute" matches
``cur.execute(...)``), so the engine only hands it those calls. ``minor_calls`` (a subset) are
calls it inspects that are no security surface on their own (``os.path.exists``: at worst a
probe), so triage does not send a unit to the models for them. Ids are stable: never reuse one.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cwescan.core.findings import SEVERITIES

_ID = re.compile(r"^CWS\d{3,4}[A-Z]?$")


@dataclass
class Hit:
    """What a rule reports about one node; the engine turns it into a Finding."""

    node: ast.AST
    message: str
    confidence: float
    lower_severity: bool = False  # medium-confidence hits are reported one severity step lower
    cwe: str | None = None  # override the rule's CWE (e.g. CWE-77 vs CWE-78)
    related: tuple[tuple[str, int], ...] = ()  # (file, line) of the calls that handed the data on


@dataclass(frozen=True)
class Rule:
    id: str
    cwe: str
    title: str
    severity: str
    check: Callable[..., Iterator[Hit]] = field(repr=False)
    node_type: type | tuple[type, ...] = ast.Call
    calls: frozenset[str] | None = None  # callee last names a call rule inspects; None: every call
    bandit_tests: tuple[str, ...] = ()  # Bandit test ids this rule delegates to
    minor_calls: frozenset[str] = frozenset()  # of ``calls``: no reason for a model review alone

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.doc.split("\n\n")[0].replace("\n", " ")


RULES: dict[str, Rule] = {}


def rule(rule_id: str, *, cwe: str, title: str, severity: str,
         node: type | tuple[type, ...] = ast.Call,
         calls: set[str] | None = None, bandit: tuple[str, ...] = (), minor_calls: set[str] = frozenset()):
    """Register the decorated function as rule ``rule_id``."""
    if not _ID.match(rule_id):
        raise ValueError(f"bad rule id {rule_id!r}: CWS + CWE number (+ letter)")
    if severity not in SEVERITIES:
        raise ValueError(f"{rule_id}: unknown severity {severity!r}")
    if minor_calls and not set(minor_calls) <= set(calls or ()):
        raise ValueError(f"{rule_id}: minor_calls must be among its calls")

    def register(func):
        if rule_id in RULES:
            raise ValueError(f"duplicate rule id {rule_id}")
        if not (func.__doc__ or "").strip():
            raise ValueError(f"{rule_id}: a rule's docstring is its documentation; write one")
        RULES[rule_id] = Rule(rule_id, cwe, title, severity, func, node,
                              frozenset(calls) if calls is not None else None, tuple(bandit), frozenset(minor_calls))
        return func

    return register
