"""The leakage-free train / validation / test split.

Steps (all deterministic: no randomness except a fixed-seed MinHash, ordering by sha256):

1. Normalise code (comments, blank lines, whitespace removed; see ``normalize.py``).
2. Duplicates: records with identical normalised code are exact duplicates; records whose 5-token
   shingle sets have Jaccard >= ``NEAR_DUP`` (found with MinHash LSH, confirmed exactly) and carry
   the same label are near duplicates. Duplicate groups (union-find) that carry both labels are
   dropped (the same code labelled both ways); of every other group one representative is kept.
   Two *different* snippets with opposite labels and Jaccard >= ``TWIN`` are not duplicates but a
   vulnerable/fixed twin: both are kept and linked.
3. Leakage groups: union-find over the kept records, linking records that share a pair id
   (``...#6:vul`` / ``...#6:fix``), a fixing commit hash, a CVE id, a file of a project
   (``repo:path``), a variant family (SecLLMHolmes' augmented copies of one base file), or whose
   code is similar (Jaccard >= ``RELATED``, which includes twins found by similarity).
4. Whole groups are assigned to parts, largest first (ties by sha256 of the group's ids), each to
   the part with the largest unfilled share of its 70/15/15 target for of the group's strata: (source, label) and the CWE
   family of its records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cwescan.core import cwe as cwe_catalog
from cwescan.data.normalize import code_tokens, join_tokens, shingles
from cwescan.data.records import DataError, Record, default_data_dir, load_records, repo_root

PARTS = ("train", "validation", "test")
TARGET = {"train": 0.70, "validation": 0.15, "test": 0.15}
NEAR_DUP = 0.9  # Jaccard of 5-token shingles at or above which same-label records are duplicates
TWIN = 0.7  # Jaccard at or above which opposite-label records are treated as vulnerable/fixed twins
RELATED = 0.7  # Jaccard at or above which any two kept records stay on the same side
SPLIT_DIR_ENV = "CWESCAN_SPLITS"


# ---------------------------------------------------------------- union-find


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller index becomes the root, so groups do not depend on call order
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return list(out.values())


def stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- similarity

_MINHASH_PERMS = 128
_BANDS = 32  # 32 bands of 4 rows: pairs with Jaccard >= ~0.5 become candidates with p > 0.95
_PRIME = (1 << 61) - 1


def _shingle_ids(sh: set[str]) -> np.ndarray:
    return np.array(
        sorted(int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=7).digest(), "big") for s in sh),
        dtype=np.uint64,
    )


def similar_pairs(shingle_sets: list[set[str]], threshold: float) -> dict[tuple[int, int], float]:
    """Pairs (i < j) whose shingle sets have Jaccard >= threshold: MinHash LSH proposes
    candidates, the exact Jaccard confirms them. Seeded, so the result is deterministic."""
    rng = np.random.default_rng(20240601)
    a = rng.integers(1, _PRIME, size=_MINHASH_PERMS, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=_MINHASH_PERMS, dtype=np.uint64)
    rows = _MINHASH_PERMS // _BANDS
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, sh in enumerate(shingle_sets):
        if not sh:
            continue
        x = _shingle_ids(sh) % np.uint64(1 << 31)
        # (a*x + b) mod p stays exact in uint64 because x < 2^31 and we reduce a first
        sig = ((np.outer(a % np.uint64(1 << 31), x) + b[:, None]) % np.uint64(_PRIME)).min(axis=1)
        for band in range(_BANDS):
            buckets[(band, sig[band * rows : (band + 1) * rows].tobytes())].append(i)
    candidates: set[tuple[int, int]] = set()
    for members in buckets.values():
        if 1 < len(members) <= 200:  # a huge bucket is boilerplate shared by many; skip
            for x_ in range(len(members)):
                for y_ in range(x_ + 1, len(members)):
                    candidates.add((members[x_], members[y_]))
    out = {}
    for i, j in sorted(candidates):
        si, sj = shingle_sets[i], shingle_sets[j]
        # Jaccard can only reach threshold if the sizes are close enough
        if min(len(si), len(sj)) < threshold * max(len(si), len(sj)):
            continue
        jac = len(si & sj) / len(si | sj)
        if jac >= threshold:
            out[(i, j)] = jac
    return out


# ---------------------------------------------------------------- leakage keys

_COMMIT_URL = re.compile(r"github\.com/([\w.-]+)/([\w.-]+)/commit/([0-9a-f]{7,40})(?::([^\s(]+))?")
_GITHUB_FILE = re.compile(r"^github:([\w.-]+)/([\w.-]+)(?:@[0-9a-f]+)?:([^\s:(]+)")
_PAREN_FILE = re.compile(r"\(([^\s():]+\.py)(?::[\w.<>]+)?\)")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_PAIR_SUFFIX = re.compile(r":(vul|fix|vuln|fixed|before|after|bad|good)$")
_AUGMENTED = re.compile(r"(?:^|/)(CWE-\d+)/(?:p_)?(\w+)\.py$")


def pair_key(record_id: str) -> str | None:
    """'sven:train/cwe-022.jsonl#1:vul' and '...#1:fix' share the key 'sven:train/cwe-022.jsonl#1'."""
    return _PAIR_SUFFIX.sub("", record_id) if _PAIR_SUFFIX.search(record_id) else None


def leakage_keys(rec: Record) -> set[str]:
    """Keys that must not be split across parts. Derived from ``id`` and ``origin`` so any
    source in the same format gets them; a key shared by two records links them."""
    keys: set[str] = set()
    if pair_key(rec.id):
        keys.add("pair:" + pair_key(rec.id))
    origin = rec.origin or ""
    for cve in _CVE.findall(origin + " " + rec.id):
        keys.add("cve:" + cve.upper())
    m = _COMMIT_URL.search(origin)
    if m:
        _owner, repo, sha, path = m.groups()
        keys.add("commit:" + sha[:12])  # forks share commit hashes: key on the hash alone
        if not path:
            p = _PAREN_FILE.search(origin)
            path = p.group(1) if p else None
        if path:
            keys.add(f"file:{repo.lower()}/{path.lstrip('/')}")
    else:
        g = _GITHUB_FILE.match(origin)
        if g:
            _owner, repo, path = g.groups()
            # a fixture file of an analyzer's test suite, or the project file a snippet came from;
            # "dataset.jsonl#12" is one entry of a dataset file, not a shared file
            if "#" not in path:
                keys.add(f"file:{repo.lower()}/{path}")
    if rec.source == "secllmholmes":
        # augmented/<kind>/<Ak>/dataset/CWE-79/p_1.py is a rewrite of hand-crafted/dataset/CWE-79/1.py
        a = _AUGMENTED.search(rec.id)
        if a:
            keys.add(f"variant:secllmholmes/{a.group(1)}/{a.group(2)}")
    return keys


# ---------------------------------------------------------------- the split


@dataclass
class SplitResult:
    parts: dict[str, list[Record]]
    dropped_conflicts: list[str] = field(default_factory=list)  # ids in dup groups with both labels
    dropped_duplicates: list[str] = field(default_factory=list)  # ids removed as duplicates
    n_groups: int = 0
    largest_group: int = 0
    twin_links: int = 0


def _stratum_keys(rec: Record) -> list[str]:
    fam = cwe_catalog.family(rec.cwes[0]) if rec.cwes and rec.cwes[0].startswith("CWE-") else "none"
    return [f"src:{rec.source}:{int(rec.vulnerable)}", f"cwe:{fam}"]


def _representative_key(rec: Record, has_pair: bool) -> tuple:
    # keep the most useful copy: one with a twin, with labelled lines, with CWEs; then stable
    return (not has_pair, not rec.lines, not rec.cwes, stable_hash(rec.id))


def build_split(records: list[Record]) -> SplitResult:
    # Long on purpose: the split's steps (dedupe, group, assign, balance, check) share the groups.
    records = sorted(records, key=lambda r: r.id)
    n = len(records)
    tokens = [code_tokens(r.code) for r in records]
    normalized = [join_tokens(t) for t in tokens]
    sh = [shingles(t) for t in tokens]
    keys = [leakage_keys(r) for r in records]
    has_pair = [any(k.startswith("pair:") for k in ks) for ks in keys]

    # 2. duplicates
    dup = UnionFind(n)
    by_norm: dict[str, int] = {}
    for i, norm in enumerate(normalized):
        h = stable_hash(norm)
        if h in by_norm:
            dup.union(by_norm[h], i)
        else:
            by_norm[h] = i
    twins: list[tuple[int, int]] = []
    related: list[tuple[int, int]] = []
    for (i, j), jac in similar_pairs(sh, min(NEAR_DUP, TWIN, RELATED)).items():
        same_label = records[i].vulnerable == records[j].vulnerable
        if same_label and jac >= NEAR_DUP:
            dup.union(i, j)
        elif not same_label and jac >= TWIN and normalized[i] != normalized[j]:
            twins.append((i, j))
        elif jac >= RELATED:
            related.append((i, j))
    kept = [False] * n
    conflicts, dups = [], []
    for members in dup.groups():
        if len({records[i].vulnerable for i in members}) > 1:
            conflicts.extend(records[i].id for i in members)
            continue
        best = min(members, key=lambda i: _representative_key(records[i], has_pair[i]))
        kept[best] = True
        dups.extend(records[i].id for i in members if i != best)

    # 3. leakage groups over kept records
    groups_uf = UnionFind(n)
    first_with_key: dict[str, int] = {}
    for i in range(n):
        if not kept[i]:
            continue
        for k in sorted(keys[i]):
            if k in first_with_key:
                groups_uf.union(first_with_key[k], i)
            else:
                first_with_key[k] = i
    twin_links = 0
    for i, j in twins:
        if kept[i] and kept[j]:
            groups_uf.union(i, j)
            twin_links += 1
    for i, j in related:
        if kept[i] and kept[j]:
            groups_uf.union(i, j)
    groups = [g for g in groups_uf.groups() if kept[g[0]]]

    # 4. greedy stratified assignment of whole groups
    totals: Counter = Counter()
    for i in range(n):
        if kept[i]:
            totals.update(_stratum_keys(records[i]))
    n_kept = sum(kept)
    counts = {p: Counter() for p in PARTS}
    sizes = {p: 0 for p in PARTS}
    order = sorted(groups, key=lambda g: (-len(g), stable_hash("\n".join(records[i].id for i in g))))
    assignment: dict[int, str] = {}
    for g in order:
        need: Counter = Counter()
        for i in g:
            need.update(_stratum_keys(records[i]))

        def deficit(p: str) -> tuple:
            # share of the part's target still unfilled, per stratum the group touches
            strat = sum(w * (1 - counts[p][s] / (TARGET[p] * totals[s])) for s, w in need.items())
            overall = len(g) * (1 - sizes[p] / (TARGET[p] * n_kept))
            return (strat + overall, TARGET[p])

        part = max(PARTS, key=deficit)
        for i in g:
            assignment[i] = part
        counts[part].update(need)
        sizes[part] += len(g)

    parts = {p: [records[i] for i in sorted(assignment) if assignment[i] == p] for p in PARTS}
    return SplitResult(
        parts=parts,
        dropped_conflicts=sorted(conflicts),
        dropped_duplicates=sorted(dups),
        n_groups=len(groups),
        largest_group=max((len(g) for g in groups), default=0),
        twin_links=twin_links,
    )


# ---------------------------------------------------------------- manifests


def splits_dir() -> Path:
    """$CWESCAN_SPLITS, else data/splits in the checkout (where the manifests are committed)."""
    env = os.environ.get(SPLIT_DIR_ENV)
    if env:
        return Path(env)
    root = repo_root()
    if root is None:
        raise DataError(f"cannot find the cwescan checkout; set {SPLIT_DIR_ENV} to the manifests folder")
    return root / "data" / "splits"


def manifest_line(rec: Record) -> str:
    return json.dumps(
        {"id": rec.id, "sha256": rec.sha256, "source": rec.source, "vulnerable": rec.vulnerable, "cwes": rec.cwes},
        ensure_ascii=False,
    )


def manifest_hash(out_dir: str | os.PathLike | None = None) -> str:
    """sha256 over the three manifests (name and bytes, in PARTS order): names the split in
    model cards and reports."""
    d = Path(out_dir) if out_dir else splits_dir()
    h = hashlib.sha256()
    for part in PARTS:
        f = d / f"{part}.jsonl"
        if not f.is_file():
            raise DataError(f"no split manifest {f}; run `cwescan data split`")
        h.update(part.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def count_table(parts: dict[str, list[Record]], key) -> list[tuple[str, list[int]]]:
    counts = {p: Counter(k for r in recs for k in key(r)) for p, recs in parts.items()}
    total = sum(counts.values(), Counter())
    return [(k, [counts[p][k] for p in PARTS]) for k, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def by_source(r: Record) -> list[str]:
    return [f"{r.source} ({'vuln' if r.vulnerable else 'safe'})"]


def by_cwe(r: Record) -> list[str]:
    if not r.vulnerable:
        return ["(safe)"]
    return [cwe_catalog.family(c) if c.startswith("CWE-") else c for c in r.cwes] or ["(no CWE label)"]


def write_split(result: SplitResult, out_dir: str | os.PathLike) -> dict:
    """Write the three manifests, SPLIT.json (counts, manifest_hash) and SPLIT.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        text = "".join(manifest_line(r) + "\n" for r in result.parts[part])
        (out / f"{part}.jsonl").write_text(text, encoding="utf-8")
    mhash = manifest_hash(out)
    sources = sorted({r.source for recs in result.parts.values() for r in recs})
    summary = {
        "manifest_hash": mhash,
        "parts": {p: len(result.parts[p]) for p in PARTS},
        "vulnerable": {p: sum(r.vulnerable for r in result.parts[p]) for p in PARTS},
        "by_source": {k: dict(zip(PARTS, v)) for k, v in count_table(result.parts, lambda r: [r.source])},
        "by_cwe_family": {k: dict(zip(PARTS, v)) for k, v in count_table(result.parts, by_cwe)},
        "dropped_conflicting_duplicates": len(result.dropped_conflicts),
        "dropped_duplicates": len(result.dropped_duplicates),
        "dropped_conflicting_ids": result.dropped_conflicts,
        "leakage_groups": result.n_groups,
        "largest_group": result.largest_group,
        "twin_links_by_similarity": result.twin_links,
        "settings": {"near_dup_jaccard": NEAR_DUP, "twin_jaccard": TWIN, "related_jaccard": RELATED, "target": TARGET},
        "sources": sources,
    }
    (out / "SPLIT.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (out / "SPLIT.md").write_text(render_summary(result, mhash), encoding="utf-8")
    return summary


def _md_table(title: str, rows: list[tuple[str, list[int]]]) -> str:
    lines = [f"| {title} | " + " | ".join(PARTS) + " | total |", "|---|" + "---:|" * (len(PARTS) + 1)]
    for k, v in rows:
        lines.append(f"| {k} | " + " | ".join(map(str, v)) + f" | {sum(v)} |")
    return "\n".join(lines)


def render_summary(result: SplitResult, mhash: str, top_cwes: int = 25) -> str:
    parts = result.parts
    total = [len(parts[p]) for p in PARTS]
    vuln = [sum(r.vulnerable for r in parts[p]) for p in PARTS]
    cwe_rows = count_table(parts, by_cwe)
    return "\n".join(
        [
            "# Split summary (generated by `cwescan data split`; do not edit)",
            "",
            f"manifest_hash: `{mhash}`",
            "",
            _md_table("part", [("records", total), ("vulnerable", vuln)]),
            "",
            f"Dropped {len(result.dropped_conflicts)} records in duplicate groups that carry both labels, and "
            f"{len(result.dropped_duplicates)} duplicate copies (one representative per group kept). "
            f"{result.n_groups} leakage groups (largest {result.largest_group} records); "
            f"{result.twin_links} vulnerable/fixed twin links found by similarity.",
            "",
            "## Per source",
            "",
            _md_table("source (label)", count_table(parts, by_source)),
            "",
            f"## Per CWE family (top {top_cwes}; a record counts once per labelled family)",
            "",
            _md_table("CWE family", cwe_rows[:top_cwes]),
            "",
        ]
    )


# ---------------------------------------------------------------- reading a part back


def read_manifest(part: str, split_dir: str | os.PathLike | None = None) -> list[dict]:
    if part not in PARTS:
        raise DataError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    f = (Path(split_dir) if split_dir else splits_dir()) / f"{part}.jsonl"
    if not f.is_file():
        raise DataError(f"no split manifest {f}; run `cwescan data split`")
    out = []
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{f}:{n}: bad manifest line: {e}") from None
    return out


def load_part(
    part: str, data_dir: str | os.PathLike | None = None, split_dir: str | os.PathLike | None = None
) -> list[Record]:
    """The records of one part, in manifest order, each checked against its manifest hash:
    changed or missing data is an error rather than a silently different split."""
    manifest = read_manifest(part, split_dir)
    records = {r.id: r for r in load_records(Path(data_dir) if data_dir else default_data_dir())}
    out, missing, changed = [], [], []
    for entry in manifest:
        rec = records.get(entry["id"])
        if rec is None:
            missing.append(entry["id"])
        elif rec.sha256 != entry["sha256"]:
            changed.append(entry["id"])
        else:
            out.append(rec)
    if missing or changed:
        raise DataError(
            f"the data no longer matches the {part} manifest: {len(missing)} missing ids "
            f"(e.g. {missing[:3]}), {len(changed)} changed code (e.g. {changed[:3]}); "
            "re-run `cwescan data split` and commit the new manifests"
        )
    return out


def run_split(
    data_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None
) -> tuple[SplitResult, dict]:
    data = Path(data_dir) if data_dir else default_data_dir()
    result = build_split(load_records(data))
    summary = write_split(result, Path(out_dir) if out_dir else splits_dir())
    return result, summary
