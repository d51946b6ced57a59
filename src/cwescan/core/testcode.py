"""Which files are test code, and what a scan does with their findings.

Test code runs on a developer's machine or in CI against data the test chose: a weakness
there rarely reaches production. As pytest, Bandit's ``-x tests`` habit and Semgrep's default
ignore list treat it, test files are told apart by path. cwescan still scans them (a real
credential or an unsafe pattern copied into production code is worth knowing about) but, by
default, reports their findings one severity lower, marked ``in_test``, and leaves them out of
``--fail-on``. ``tests = "normal"`` treats them like any code, ``tests = "skip"`` does not scan
them.

Paths are matched like ``exclude`` patterns (.gitignore syntax) against the path relative to
the project root. ``test-paths`` replaces the patterns for reporting and skipping; the static
rules' handling of test idioms (test clients, fixtures' parameters, requests to localhost)
uses the default patterns, since it is about what the code does, not how it is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pathspec

from cwescan.core.findings import SEVERITIES, Finding, severity_rank

T = TypeVar("T")

# pytest's discovery names, the usual test folders, Django's per-app tests module
DEFAULT_TEST_PATHS: tuple[str, ...] = (
    "tests/", "test/", "testing/", "test_*.py", "*_test.py", "tests.py", "conftest.py",
)
TEST_MODES = ("report", "normal", "skip")
DEFAULT_TEST_MODE = "report"


class TestPaths:
    """Matches test files by relative posix path."""

    __test__ = False  # not a test class, whatever pytest's collector thinks of the name

    def __init__(self, patterns: Iterable[str] = DEFAULT_TEST_PATHS) -> None:
        self.patterns = tuple(patterns)
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    def match(self, relpath: str) -> bool:
        return bool(self.patterns) and self._spec.match_file(relpath)


_DEFAULT = TestPaths()


@dataclass(frozen=True)
class TestCodePolicy:
    """What a scan does with test code: ``mode`` report | normal | skip, test files by
    ``patterns``."""

    __test__ = False

    mode: str = DEFAULT_TEST_MODE
    patterns: tuple[str, ...] = DEFAULT_TEST_PATHS
    paths: TestPaths = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in TEST_MODES:
            raise ValueError(f"tests: expected one of {', '.join(TEST_MODES)}, got {self.mode!r}")
        object.__setattr__(self, "paths", TestPaths(self.patterns))

    def to_scan(self, items: Sequence[T], path_of: Callable[[T], str]) -> tuple[list[T], int]:
        """The items to scan, and how many test files ``skip`` left out."""
        if self.mode != "skip":
            return list(items), 0
        kept = [i for i in items if not self.paths.match(path_of(i))]
        return kept, len(items) - len(kept)

    def mark(self, findings: Iterable[Finding]) -> None:
        """In ``report`` mode, findings in test code: marked ``in_test`` and one severity lower,
        in place."""
        if self.mode != "report":
            return
        for f in findings:
            if self.paths.match(f.path):
                f.extra["in_test"] = True
                f.severity = SEVERITIES[max(0, severity_rank(f.severity) - 1)]


def is_test_path(relpath: str) -> bool:
    """Whether ``relpath`` is test code by the default patterns."""
    return _DEFAULT.match(relpath)
