"""Shared test detectors: small real detectors that the pipeline, output and CLI tests
configure instead of each writing its own.

- :class:`CallDetector` flags calls by name, the way a static rule set would.
- :class:`KeywordModel` is a model-stage detector (a ``ModelDetector``): it judges a function
  vulnerable when its code mentions a keyword, with a fixed probability.

Tests register them under a name with ``monkeypatch.setitem(REGISTRY, name, "conftest:Class")``
or a subclass of their own; worker processes import them from here.
"""

from __future__ import annotations

import ast
import time

from cwescan.core.policy import DecisionPolicy
from cwescan.core.findings import Finding
from cwescan.detectors.base import Detector, ModelDetector

SLOW_MARKER = "SLOW_MARKER"  # a unit holding it makes CallDetector sleep 5 s (time bounds)
BOOM_MARKER = "BOOM_MARKER"  # a unit holding it makes CallDetector raise (detector errors)


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


class CallDetector(Detector):
    """Flags calls by name. ``calls``: called name -> (cwe, severity, confidence). Each call is
    reported once, by the innermost unit holding it (the module unit reports top-level code
    only); the rule id is ``rule_id(called, cwe)``."""

    name = "t_calls"
    calls: dict[str, tuple[str, str, float]] = {
        "eval": ("CWE-95", "critical", 0.75), "loads": ("CWE-502", "critical", 0.75),
        "md5": ("CWE-328", "medium", 0.75), "choice": ("CWE-330", "low", 0.75)}

    def rule_id(self, called: str, cwe: str) -> str:
        return f"{self.name}-{called}"

    def message(self, called: str) -> str:
        return f"{called}() flagged by {self.name}"

    def detect(self, units):
        out = []
        for u in units:
            if SLOW_MARKER in u.code:
                time.sleep(5)
            if BOOM_MARKER in u.code:
                raise RuntimeError("detector bug")
            if u.node is None:
                continue
            nested = _function_lines(u) if u.kind == "module" else set()
            for n in ast.walk(u.node):
                if isinstance(n, ast.Call) and n.lineno not in nested:
                    called = _called_name(n)
                    if called in self.calls:
                        cwe, sev, conf = self.calls[called]
                        out.append(Finding(u.path, n.lineno, n.end_lineno, cwe, self.rule_id(called, cwe),
                                           f"{called} call", self.message(called), conf, sev, self.name))
        return out


def _function_lines(unit) -> set[int]:
    return {i for n in ast.walk(unit.node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            for i in range(n.lineno, n.end_lineno + 1)}


class KeywordModel(ModelDetector):
    """A model-stage detector: P(vulnerable) is ``p`` for a function whose code mentions
    ``keyword``, else 0; it reports those at or above ``threshold`` as CWE-20 over the unit."""

    name = "slm"
    keyword = "request"
    p = 0.66
    threshold = 0.5
    # show what it finds as it is: these tests are about the pipeline, not the policy
    policy = DecisionPolicy(model_only=0.0, cwe_head=0.0, line=0.0)

    def __init__(self, precision: str = "fp32", device: str = "cpu") -> None:
        self.precision, self.device = precision, device
        self.card = {}
        self.loads = 0

    def load(self) -> None:
        self.loads += 1

    def cache_identity(self) -> dict | None:
        return None  # no model card: never cached

    def score(self, units):
        return [self.p if u.kind == "function" and self.keyword in u.code else 0.0 for u in units]

    def detect(self, units, hints=None):
        return [Finding(u.path, u.start_line, u.end_line, "CWE-20", "SLM", "model verdict",
                        "the model judged this function vulnerable", p, "medium", self.name)
                for u, p in zip(units, self.score(units)) if p >= self.threshold]
