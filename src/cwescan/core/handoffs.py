"""Outside data one file of a scan hands to a function of another: the facts that carry data
flow across modules.

A web application keeps its helpers apart from its views: ``views.py`` calls
``helpers.run_cmd(request.args["cmd"])`` and ``helpers.py`` runs ``os.system(cmd)``. Read alone,
the helper's file shows a caller-supplied parameter (a weak source, one severity lower) and the
view's file hands request data to a function it cannot see into. So the static pass of each
file also lists its :class:`Handoff` s, and :class:`CallIndex` matches them to the files of the
scan that define the functions called, whose parameters are then bound to what was handed
(one step, module-level functions, named through the caller's own imports).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Handoff:
    """One argument carrying outside data into a call of an imported function."""

    callee: str  # dotted, as the caller's imports name it: "helpers.run_cmd", "app.helpers.run_cmd"
    position: int | None  # the positional argument's index (None: passed by keyword)
    keyword: str | None  # the keyword it is passed as (None: positional)
    source: str  # source kind of the data (a key of the static detector's SOURCE_CONFIDENCE)
    origin: str  # the source as an explanation names it: "request data (request.args)"
    caller_path: str  # the caller's file (as the scan reports paths), line and function
    caller_line: int
    caller_function: str = ""  # "" at module level or in a lambda
    built: bool = False  # made by string building before the call
    safe_for: frozenset[str] = field(default_factory=frozenset)  # sink kinds a sanitiser made it safe for

    @property
    def caller(self) -> str:
        """Where, as an explanation names it: "views.py:12, in ping()"."""
        where = f"{self.caller_path}:{self.caller_line}"
        return f"{where}, in {self.caller_function}()" if self.caller_function else where


def module_names(relpath: str) -> list[str]:
    """The dotted names a file may be imported under, longest first: ``app/helpers.py`` ->
    ["app.helpers", "helpers"]; a package's ``__init__.py`` is the package."""
    parts = list(PurePosixPath(relpath).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return [".".join(parts[i:]) for i in range(len(parts)) if all(p.isidentifier() for p in parts[i:])]


class CallIndex:
    """Which functions of the scanned files other files hand outside data to."""

    def __init__(self, relpaths: Iterable[str]) -> None:
        self._files: dict[str, set[str]] = {}  # dotted module name -> files it may name
        for path in relpaths:
            for name in module_names(path):
                self._files.setdefault(name, set()).add(path)
        self._incoming: dict[str, dict[str, list[Handoff]]] = {}

    def add(self, caller_path: str, handoffs: Sequence[Handoff]) -> None:
        for h in handoffs:
            module, _, func = h.callee.rpartition(".")
            target = _nearest(caller_path, self._files.get(module, set()))
            if target is not None and target != caller_path:
                self._incoming.setdefault(target, {}).setdefault(func, []).append(h)

    def incoming(self) -> dict[str, dict[str, list[Handoff]]]:
        """File -> function name -> what other files hand it."""
        return self._incoming


def _nearest(caller: str, files: set[str]) -> str | None:
    """The file a module name means for ``caller``: the only one, else the one sharing the
    most folders with it (a script imports its neighbours: its folder leads ``sys.path``);
    None when two are equally near."""
    if len(files) <= 1:
        return next(iter(files), None)
    folders = PurePosixPath(caller).parts[:-1]

    def shared(path: str) -> int:
        n = 0
        for a, b in zip(folders, PurePosixPath(path).parts[:-1]):
            if a != b:
                break
            n += 1
        return n

    ranked = sorted(files, key=shared, reverse=True)
    return ranked[0] if shared(ranked[0]) > shared(ranked[1]) else None
