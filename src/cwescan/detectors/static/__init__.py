"""The static detector: AST rules plus a light intraprocedural data flow.

Rules live in ``rules/`` grouped by weakness kind; each is one function registered with
``@rule`` whose docstring is its documentation (``cwescan rules --docs``
prints them all as Markdown: docs/RULES.md). A few rules delegate the core of their check to
Bandit's plugin functions (see ``bandit_bridge``) and add data flow on top.
"""

from cwescan.detectors.static.engine import StaticDetector
from cwescan.detectors.static.registry import RULES, Hit, Rule, rule

__all__ = ["RULES", "Hit", "Rule", "StaticDetector", "rule"]
