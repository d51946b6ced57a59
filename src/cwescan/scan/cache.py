"""Result cache for the model stage: what a model detector found in one unit, kept on disk so
that a second scan of an unchanged tree does not run (or even load) the model.

Key (SHA-256 over canonical JSON) of one unit for one detector:

- the model: detector name, the sha256 of its card (the card records the sha256 of every
  weight file, and the SLM's card the base GGUF's), precision, device, threshold, mode and
  prompt options, plus a hash of the detector's own source code (a changed prompt template or
  decoding rule must not be served old answers);
- what the prompt is made of: the unit's code text and kind, its first line (findings carry
  file line numbers), the static findings inside it (the hints), and the code of its callers
  in the same file (the SLM shows them as context).

Value: the detector's findings inside the unit, as JSON (never pickle), path left out (set on
load, so a renamed file with the same code is still served). One file per key under
``<root>/results/<2 hex>/<key>.json``, written atomically (temp file + ``os.replace``), so
an interrupted scan or two scans at once never leave a half-written entry; an unreadable or
malformed entry is a miss. The store is bounded: after a scan that wrote entries, the least
recently used ones (a hit refreshes the file's mtime) are removed until it fits.

Root: ``$CWESCAN_CACHE``, else ``$XDG_CACHE_HOME/cwescan``, else ``~/.cache/cwescan``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from cwescan.core.findings import Finding, in_unit
from cwescan.core.units import Unit
from cwescan.detectors.base import ModelDetector

FORMAT = 1  # bump when the stored layout changes
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_FINDING_FIELDS = tuple(f.name for f in fields(Finding) if f.name != "path")


def default_root() -> Path:
    env = os.environ.get("CWESCAN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cwescan"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":"), default=str).encode()).hexdigest()


def _source_hash(detector: ModelDetector) -> str:
    """Hash of the code that turns a unit into the detector's answer: its module and, when it
    has one, the package of the same name (``cwescan/ml/slm/`` for the SLM)."""
    module = sys.modules.get(type(detector).__module__)
    paths: list[Path] = []
    if module is not None and module.__file__:
        paths.append(Path(module.__file__))
        package = Path(module.__file__).parents[1] / "ml" / detector.name
        if package.is_dir():
            paths.extend(sorted(package.glob("*.py")))
    h = hashlib.sha256()
    for p in paths:
        try:
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        except OSError:
            h.update(p.name.encode() + b"\0?")
    return h.hexdigest()


def model_key(detector: ModelDetector) -> str | None:
    """The model part of every key for ``detector``; None when it has no trusted identity
    (its results are then not cached)."""
    identity = detector.cache_identity()
    if identity is None:
        return None
    return _digest({"format": FORMAT, **identity, "code": _source_hash(detector)})


def _finding_fields(f: Finding, start: int) -> dict:
    d = {k: getattr(f, k) for k in _FINDING_FIELDS}
    d["start_line"] -= start
    d["end_line"] -= start
    return d


def unit_key(model: str, unit: Unit, hints: Sequence[Finding]) -> str:
    """Key of ``unit`` for the model keyed ``model``; ``hints``: the static findings that the
    detector is given for the unit's file (only those inside the unit count)."""
    from cwescan.ml.slm.prompt import callers_of

    inside = sorted((f for f in hints if in_unit(f, unit)),
                    key=Finding.sort_key)
    return _digest({
        "model": model,
        "kind": unit.kind,
        "qualname": unit.qualname,
        "start_line": unit.start_line,
        "code": unit.code,
        "hints": [_finding_fields(f, 0) for f in inside],
        "callers": [c.code for c in callers_of(unit)],
    })


class ResultCache:
    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.dir = self.root / "results"
        self.max_bytes = max_bytes
        self.hits = self.misses = self.writes = self.errors = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str, unit: Unit) -> list[Finding] | None:
        """The cached findings of ``unit``, or None on a miss (also for a damaged entry)."""
        path = self._path(key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT or doc.get("key") != key:
                raise ValueError("not an entry of this cache format")
            found = [Finding(path=unit.path, **{k: d[k] for k in _FINDING_FIELDS})
                     for d in doc["findings"]]
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.misses += 1
            self.errors += 1
            return None
        try:
            os.utime(path)  # recently used: pruned last
        except OSError:
            pass
        self.hits += 1
        return found

    def put(self, key: str, findings: Sequence[Finding]) -> bool:
        """Store ``findings`` (file line numbers, as the detector reported them) atomically.
        False when they cannot be stored (not JSON-serialisable, disk full...)."""
        entry = {"format": FORMAT, "key": key,
                 "findings": [{k: getattr(f, k) for k in _FINDING_FIELDS} for f in findings]}
        try:
            text = json.dumps(entry, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            self.errors += 1
            return False
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            self.errors += 1
            return False
        self.writes += 1
        return True

    def prune(self) -> int:
        """Remove least recently used entries until the store is within ``max_bytes`` (down to
        90 % of it, so the next scan does not prune again at once). Returns entries removed."""
        entries = []
        total = 0
        for path in self.dir.glob("*/*.json"):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
            total += st.st_size
        if total <= self.max_bytes:
            return 0
        removed = 0
        target = int(self.max_bytes * 0.9)
        for _, size, path in sorted(entries):
            if total <= target:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        return removed
