"""Realistic negatives: real functions of well-kept Python packages, presumed safe.

The labelled data is ~60 % vulnerable and holds few ordinary functions that call sinks, which is
exactly the code the model reviews in a scan. This module builds a corpus of such functions from
the Python sources of a site-packages tree:

- every ``.py`` file is assigned to the distribution that installed it (``*.dist-info/RECORD``;
  a file no RECORD lists is assigned to its top-level folder);
- distributions are split **by package** into train / validation / test by a salted hash of the
  normalised distribution name (``package_part``), so a package's code never sits on two sides and
  the same name lands on the same side on any machine;
- files are split into units with the scanner's own splitter (``cwescan.core.units``) and a unit is
  kept only when triage would send it to the model: it calls a known sink or reads a source
  (``cwescan.scan.triage.surface``). Units without a surface never reach the model, so they teach it
  nothing and would only inflate the counts;
- kept units whose normalised code (comments and layout removed) equals the code or a unit of a
  labelled record are dropped, as are repeats inside the corpus (first one kept, in sorted order).

The kept units are **presumed safe**, not verified: maintained library code is rarely vulnerable
(well under 1 % of functions at real prevalence), so the label noise this adds is small next to
the 60 % prevalence of the labelled data. The corpus itself is written as records (the format of
the labelled data, ``vulnerable: false``) with one file per part, plus ``MANIFEST.json``:
packages with versions, parts, per-package digests of the files read, line and unit counts, and
the command. Only the manifest is meant to be committed; the code stays on the machine that built
it and can be rebuilt from the same site-packages.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PARTS = ("train", "validation", "test")
SPLIT_SALT = "cwescan-negatives-v1"
TEST_PERCENT = 15
VALIDATION_PERCENT = 15
MAX_UNIT_LINES = 400  # longer units are kept out: they are rare and cost many windows each
MANIFEST = "MANIFEST.json"


class NegativesError(ValueError):
    """Bad input to the corpus builder; the message says what and where."""


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name: ``Markdown_It.Py`` -> ``markdown-it-py``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_part(name: str, salt: str = SPLIT_SALT) -> str:
    """train, validation or test for a distribution name: a salted sha256 of its canonical name,
    so the split depends on nothing but the name."""
    bucket = int(hashlib.sha256(f"{salt}:{canonical_name(name)}".encode()).hexdigest()[:8], 16) % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + VALIDATION_PERCENT:
        return "validation"
    return "train"


@dataclass
class Package:
    name: str  # canonical distribution name
    version: str
    files: list[str] = field(default_factory=list)  # posix paths relative to site-packages


def _metadata_field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if not line.strip():
            break  # headers end at the first blank line
        if line.lower().startswith(key.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


def discover_packages(site: Path) -> list[Package]:
    """The distributions of a site-packages tree with the ``.py`` files each installed, from
    ``*.dist-info/METADATA`` and ``RECORD``. Python files no RECORD lists (egg installs, files
    left behind) go to a package named after their top-level folder or module."""
    site = Path(site)
    if not site.is_dir():
        raise NegativesError(f"{site}: not a folder")
    owner: dict[str, str] = {}
    packages: dict[str, Package] = {}
    for info in sorted(site.glob("*.dist-info")):
        meta = info / "METADATA"
        record = info / "RECORD"
        if not meta.is_file() or not record.is_file():
            continue
        text = meta.read_text(encoding="utf-8", errors="replace")
        name = _metadata_field(text, "Name")
        if not name:
            continue
        name = canonical_name(name)
        pkg = packages.setdefault(name, Package(name, _metadata_field(text, "Version") or ""))
        for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8", errors="replace"))):
            if not row or not row[0].endswith(".py"):
                continue
            rel = os.path.normpath(row[0]).replace(os.sep, "/")
            if rel.startswith("..") or rel in owner or not (site / rel).is_file():
                continue
            owner[rel] = name
            pkg.files.append(rel)
    for path in sorted(site.rglob("*.py")):
        rel = path.relative_to(site).as_posix()
        if rel in owner or ".dist-info/" in rel or "__pycache__" in rel:
            continue
        top = rel.split("/", 1)[0]
        name = canonical_name(top.removesuffix(".py"))
        packages.setdefault(name, Package(name, "")).files.append(rel)
        owner[rel] = name
    out = [p for p in packages.values() if p.files]
    for p in out:
        p.files.sort()
    return sorted(out, key=lambda p: p.name)


def labelled_hashes(records: Iterable) -> set[str]:
    """Normalised-code hashes of every labelled record and of each of its units (dedented), the
    keys a corpus unit must not share."""
    from cwescan.core.units import model_code, parse_source
    from cwescan.data.normalize import normalized_hash

    out: set[str] = set()
    for r in records:
        out.add(normalized_hash(r.code))
        for u in parse_source(r.id, r.code).units:
            out.add(normalized_hash(model_code(u)))
    return out


def _package_units(args: tuple[str, str, str, Sequence[str]]) -> dict:
    """Worker: read, split and triage the files of one package. Returns counts, the kept units
    (with their normalised hash) and the digest of the files read."""
    from cwescan.core.units import model_code, parse_source
    from cwescan.data.normalize import normalized_hash
    from cwescan.scan.triage import file_bindings, file_imports, surface

    site, name, version, files = args
    digest = hashlib.sha256()
    lines = units = unreadable = unparsed = 0
    kept = []
    for rel in files:
        try:
            raw = (Path(site) / rel).read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            unreadable += 1
            continue
        digest.update(rel.encode() + b"\0" + hashlib.sha256(raw).digest())
        src = parse_source(rel, text)
        lines += len(src.lines)
        if src.tree is None:
            unparsed += 1
            continue
        imports, bound = file_imports(src.tree), file_bindings(src.tree)
        for u in src.units:
            units += 1
            if u.end_line - u.start_line + 1 > MAX_UNIT_LINES or not u.code.strip():
                continue
            why = surface(u, imports, bound)
            if why is None:
                continue
            code = model_code(u)
            kept.append({
                "id": f"neg:{name}:{rel}:{u.qualname}:{u.start_line}",
                "code": code,
                "surface": f"{why[0]}:{why[1]}",
                "lines": u.end_line - u.start_line + 1,
                "hash": normalized_hash(code),
                "origin": f"{name}=={version}:{rel}#L{u.start_line}-{u.end_line}",
            })
    return {"name": name, "version": version, "files": len(files), "unreadable": unreadable,
            "unparsed": unparsed, "source_lines": lines, "units": units, "kept": kept,
            "files_sha256": digest.hexdigest()}


def _write_parts(results: list[dict], out: Path, parts: Sequence[str], known: set[str]) -> tuple[list[dict], dict]:
    """Write the kept units of every package to ``<part>.jsonl`` (dropping labelled and repeated
    code) and return the manifest's package entries and per-part totals."""
    seen: set[str] = set()
    files = contextlib.ExitStack()  # one open file per part, all closed on any error
    handles = {p: files.enter_context(open(out / f"{p}.jsonl.tmp", "w", encoding="utf-8")) for p in parts}  # noqa: SIM115
    manifest_packages = []
    totals = {p: {"packages": 0, "files": 0, "source_lines": 0, "units": 0, "reviewed_units": 0,
                  "kept_units": 0, "kept_lines": 0, "dropped_labelled": 0, "dropped_repeats": 0} for p in parts}
    try:
        for res in results:  # sorted by package name: the first copy of repeated code wins
            part = package_part(res["name"])
            dropped_labelled = dropped_repeats = kept = kept_lines = 0
            for u in res["kept"]:
                if u["hash"] in known:
                    dropped_labelled += 1
                    continue
                if u["hash"] in seen:
                    dropped_repeats += 1
                    continue
                seen.add(u["hash"])
                kept += 1
                kept_lines += u["lines"]
                handles[part].write(json.dumps({
                    "id": u["id"], "source": f"negatives:{res['name']}", "code": u["code"], "vulnerable": False,
                    "cwes": [], "lines": [], "license": "", "origin": u["origin"], "surface": u["surface"],
                }, ensure_ascii=False) + "\n")
            entry = {"name": res["name"], "version": res["version"], "part": part, "files": res["files"],
                     "unreadable_files": res["unreadable"], "unparsed_files": res["unparsed"],
                     "source_lines": res["source_lines"], "units": res["units"], "reviewed_units": len(res["kept"]),
                     "kept_units": kept, "kept_lines": kept_lines, "dropped_labelled": dropped_labelled,
                     "dropped_repeats": dropped_repeats, "files_sha256": res["files_sha256"]}
            manifest_packages.append(entry)
            t = totals[part]
            t["packages"] += 1
            for k in ("files", "source_lines", "units", "reviewed_units", "kept_units", "kept_lines",
                      "dropped_labelled", "dropped_repeats"):
                t[k] += entry[k]
    finally:
        files.close()
    for p in parts:
        (out / f"{p}.jsonl.tmp").replace(out / f"{p}.jsonl")
    return manifest_packages, totals


def build_negatives(site: Path, out: Path, labelled: Iterable = (), only: Sequence[str] | None = None,
                    parts: Sequence[str] = PARTS, workers: int | None = None, command: str = "") -> dict:
    """Build the corpus (see the module docstring) and write ``<part>.jsonl`` and the manifest.
    ``only``: restrict to these distribution names (e.g. a manifest's test packages, to rebuild
    the held-out part on another machine); ``parts``: the parts to write."""
    site, out = Path(site).resolve(), Path(out)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise NegativesError(f"unknown part {bad[0]!r}; choose from {', '.join(PARTS)}")
    packages = discover_packages(site)
    if only is not None:
        wanted = {canonical_name(n) for n in only}
        packages = [p for p in packages if p.name in wanted]
    packages = [p for p in packages if package_part(p.name) in parts and p.name != "cwescan"]
    if not packages:
        raise NegativesError(f"{site}: no Python packages to read" + (" among the names asked for" if only else ""))
    known = labelled_hashes(labelled)
    jobs = [(str(site), p.name, p.version, p.files) for p in packages]
    workers = workers or min(32, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_package_units, jobs, chunksize=1))
    else:
        results = [_package_units(j) for j in jobs]
    out.mkdir(parents=True, exist_ok=True)
    manifest_packages, totals = _write_parts(results, out, parts, known)
    manifest = {
        "kind": "negatives-corpus",
        "description": "units of site-packages sources that triage would send to the model (a sink call or a "
                       "source read), presumed safe; split by package; de-duplicated against the labelled data",
        "command": command,
        "site_packages": str(site),
        "split": {"salt": SPLIT_SALT, "test_percent": TEST_PERCENT, "validation_percent": VALIDATION_PERCENT,
                  "rule": "sha256(salt:canonical name)[:8] % 100: < test -> test, < test+validation -> validation"},
        "max_unit_lines": MAX_UNIT_LINES,
        "labelled_hashes": len(known),
        "parts": totals,
        "packages": manifest_packages,
    }
    manifest["packages_sha256"] = hashlib.sha256(
        json.dumps(manifest_packages, sort_keys=True).encode()).hexdigest()
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(path: Path) -> dict:
    """A corpus manifest, from the file or its folder."""
    path = Path(path)
    f = path / MANIFEST if path.is_dir() else path
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NegativesError(f"{f}: cannot read the negatives manifest: {e}") from None


def part_packages(manifest: dict, part: str) -> list[dict]:
    return [p for p in manifest["packages"] if p["part"] == part]


def manifest_digest(manifest: dict) -> str:
    """The hash that names a corpus in model cards: its packages, versions, file digests and counts."""
    return manifest["packages_sha256"]


def sample_negatives(directory: str | Path, ratio: float, labelled_units: int, seed: int,
                     validation_cap: int | None = None) -> dict:
    """A training recipe's share of a corpus: ``ratio`` x ``labelled_units`` units sampled from
    its train part (all of them when fewer), and its validation part (a sample of at most
    ``validation_cap``); both deterministic in ``seed``. ``directory`` may name the corpus as
    ``${CWESCAN_NEGATIVES}``."""
    import random

    from cwescan.data.records import load_records

    d = Path(os.path.expandvars(str(directory)))
    manifest = read_manifest(d)
    train = load_records(d / "train.jsonl") if ratio > 0 else []
    validation = load_records(d / "validation.jsonl")
    n = min(len(train), round(ratio * labelled_units))
    train = random.Random(seed).sample(train, n) if n < len(train) else train
    if validation_cap and len(validation) > validation_cap:
        validation = random.Random(seed + 1).sample(validation, validation_cap)
    return {"train": train, "validation": validation, "manifest_hash": manifest_digest(manifest)}
