"""Labelled records: `{id, source, code, vulnerable, cwes, lines, license, origin}` per JSONL line,
in the format of ../shared/datasets (``lines`` are 1-based inside ``code``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cwescan.core import cwe as cwe_catalog


class DataError(Exception):
    """Bad or missing data; the message says where and why."""


@dataclass
class Record:
    id: str
    source: str
    code: str
    vulnerable: bool
    cwes: list[str] = field(default_factory=list)  # normalised "CWE-89"; unparseable labels kept raw
    lines: list[int] = field(default_factory=list)
    license: str = ""
    origin: str = ""  # provenance as given: commit URL, repo@commit:path, pair ids, CVE ids

    @property
    def sha256(self) -> str:
        """Hash of the raw code, stored in the split manifests to notice changed data."""
        return hashlib.sha256(self.code.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_cwes(raw: Iterable) -> list[str]:
    """Normalise each label; labels that are not CWE ids (e.g. 'Other') are kept as given so no
    information is lost, and duplicates are removed in order."""
    out: list[str] = []
    for c in raw:
        try:
            c = cwe_catalog.normalize(c)
        except ValueError:
            c = str(c).strip()
            if not c:
                continue
        if c not in out:
            out.append(c)
    return out


def record_from_dict(d: dict) -> Record:
    """Build a Record from one parsed JSON object; raises ValueError saying what is wrong."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    missing = [k for k in ("id", "code", "vulnerable") if k not in d]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if not isinstance(d["code"], str):
        raise ValueError("'code' must be a string")
    vulnerable = d["vulnerable"]
    if not isinstance(vulnerable, bool):
        if vulnerable in (0, 1):
            vulnerable = bool(vulnerable)
        else:
            raise ValueError(f"'vulnerable' must be true or false, got {vulnerable!r}")
    cwes = d.get("cwes") or []
    if isinstance(cwes, str):
        cwes = [cwes]
    lines = d.get("lines") or []
    try:
        lines = [int(x) for x in lines]
    except (TypeError, ValueError):
        raise ValueError(f"'lines' must be a list of integers, got {lines!r}") from None
    return Record(
        id=str(d["id"]),
        source=str(d.get("source") or str(d["id"]).split(":", 1)[0]),
        code=d["code"],
        vulnerable=vulnerable,
        cwes=normalize_cwes(cwes),
        lines=lines,
        license=str(d.get("license") or ""),
        origin=d.get("origin") if isinstance(d.get("origin"), str) else json.dumps(d.get("origin") or ""),
    )


def _jsonl_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DataError(f"{path}: folder holds no *.jsonl files")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return [path]


def load_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Record]:
    """Records from one JSONL file, several, or folders of *.jsonl (in sorted order). Extra
    fields are ignored; a bad line raises DataError naming file:line; duplicate ids are an error
    because ids key the split manifests."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records: list[Record] = []
    seen: dict[str, str] = {}
    for p in paths:
        for f in _jsonl_files(Path(p)):
            with open(f, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = record_from_dict(json.loads(line))
                    except (json.JSONDecodeError, ValueError) as e:
                        raise DataError(f"{f}:{n}: bad record: {e}") from None
                    if rec.id in seen:
                        raise DataError(f"{f}:{n}: duplicate id {rec.id!r} (first seen in {seen[rec.id]})")
                    seen[rec.id] = f"{f}:{n}"
                    records.append(rec)
    return records


def repo_root() -> Path | None:
    """The checkout holding this package (editable install), else the cwd's checkout."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "pyproject.toml").is_file() and (d / "src" / "cwescan").is_dir():
                return d
    return None


def default_data_dir() -> Path:
    """$CWESCAN_DATA, else ../shared/datasets next to the repository root."""
    env = os.environ.get("CWESCAN_DATA")
    if env:
        d = Path(env)
        if not d.is_dir():
            raise DataError(f"CWESCAN_DATA={env} is not a folder")
        return d
    root = repo_root()
    if root is None:
        raise DataError("cannot find the cwescan checkout; set CWESCAN_DATA to the datasets folder")
    d = root.parent / "shared" / "datasets"
    if not d.is_dir():
        raise DataError(
            f"no datasets folder at {d}; set CWESCAN_DATA to the folder of *.jsonl records "
            "(the labelled data is not shipped in the repository)"
        )
    return d
