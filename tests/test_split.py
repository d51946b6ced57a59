"""The split: deterministic, and nothing that must stay together straddles two parts."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from cwescan.data.normalize import code_tokens, normalize_code
from cwescan.data.records import DataError, Record, load_records
from cwescan.data.split import (
    PARTS,
    build_split,
    leakage_keys,
    load_part,
    manifest_hash,
    run_split,
    similar_pairs,
    write_split,
)
from cwescan.data.normalize import shingles

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets"
COMMITTED = REPO / "data" / "splits"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="labelled data not present")

BODY = """
def handler_{n}(request):
    name = request.args.get("name")
    query = "SELECT * FROM users WHERE name = '%s'" % name
    rows = db.execute(query)
    for row in rows:
        log.info("row %s", row)
    return render(rows, page={n})
"""


def rec(id, code, vulnerable=True, source="synth", cwes=("CWE-89",), origin=""):
    return Record(id=id, source=source, code=code, vulnerable=vulnerable, cwes=list(cwes), origin=origin)


def synthetic() -> list[Record]:
    recs = []
    for n in range(60):  # unrelated records, so the parts have room
        recs.append(rec(f"s:free{n}", BODY.format(n=n).replace("name", f"name{n}"), vulnerable=n % 2 == 0))
    fixed = BODY.format(n=100).replace("'%s'\" % name", "?\", (name,)")
    assert fixed != BODY.format(n=100)
    url = "https://github.com/o/r/commit/" + "a" * 40
    recs += [
        rec("s:pair#1:vul", BODY.format(n=100), origin=f"{url} (app.py:handler)"),
        rec("s:pair#1:fix", fixed, vulnerable=False, cwes=(), origin=f"{url} (app.py:handler)"),
        # another function of the same commit, and a record naming the same CVE
        rec("s:commit-other", "def other():\n    return os.system(cmd)\n", origin=f"{url} (util.py:other)"),
        rec("s:cve-a", "def cve_a():\n    eval(x)\n", origin="fix for CVE-2020-1234"),
        rec("s:cve-b", "def cve_b():\n    exec(y)\n", origin="see cve-2020-1234 advisory"),
        # exact duplicate (comments and whitespace differ) with the same label: one copy kept
        rec("s:dupA", "def d(x):\n    return pickle.loads(x)\n", cwes=("CWE-502",)),
        rec("s:dupB", "def d(x):  # load\n\n    return  pickle.loads( x )\n", cwes=("CWE-502",)),
        # exact duplicate with both labels: the group is dropped
        rec("s:confA", "def c(p):\n    open(p).read()\n", cwes=("CWE-22",)),
        rec("s:confB", "def c(p):\n    open(p).read()  # fine\n", vulnerable=False, cwes=()),
    ]
    return recs


def test_normalize_ignores_comments_blank_lines_whitespace():
    a = "x = 1  # one\n\n\ny  =  f( x )\n"
    b = "x=1\ny=f(x)"
    assert normalize_code(a) == normalize_code(b) == "x=1y=f(x)"
    # a '#' inside a string is code, not a comment
    assert "#" in normalize_code('s = "a # b"\n')
    # code that does not tokenize falls back to the regex path
    broken = 'print "hi"  # py2\n  def (\n'
    assert normalize_code(broken) == 'print"hi"def('
    assert code_tokens("'''unterminated") != []


def test_leakage_keys_from_ids_and_origins():
    sven = Record(
        "sven:train/cwe-022.jsonl#1:vul", "sven", "x", True, [], [], "",
        "https://github.com/zms/zms4/commit/3f28620d475220dfdb06f79787158ac50727c61a (ZMSItem.py:page) via github:eth-sri/sven@e8449a0d54a5:data/x.jsonl#1",
    )
    keys = leakage_keys(sven)
    assert "pair:sven:train/cwe-022.jsonl#1" in keys
    assert "commit:3f28620d4752" in keys
    assert "file:zms4/ZMSItem.py" in keys
    fixture = Record("semgrep_rules:a/b.py:f:3", "semgrep_rules", "x", True, origin="github:semgrep/semgrep-rules@157ae4706d7f:a/b.py (rules b.yaml) lines 3-5")
    assert leakage_keys(fixture) == {"file:semgrep-rules/a/b.py"}
    # an entry of a dataset file is not a shared file
    entry = Record("sallm:x.py", "sallm", "x", True, origin="github:s2e-lab/SALLM@7f17a76b5a1c:PythonDataset/dataset.jsonl#x.py")
    assert leakage_keys(entry) == set()
    variant = Record("secllmholmes:augmented/trivial/A1/dataset/CWE-89/p_1.py", "secllmholmes", "x", False)
    base = Record("secllmholmes:hand-crafted/dataset/CWE-89/1.py", "secllmholmes", "x", True)
    assert leakage_keys(variant) & leakage_keys(base)


def test_similar_pairs_finds_near_duplicates_only():
    a = code_tokens(BODY.format(n=1))
    b = code_tokens(BODY.format(n=1).replace("page=1", "page=2"))
    c = code_tokens("def unrelated():\n    return [i * i for i in range(10) if i % 3]\n")
    pairs = similar_pairs([shingles(a), shingles(b), shingles(c)], 0.7)
    assert set(pairs) == {(0, 1)}
    assert 0.7 <= pairs[(0, 1)] < 1.0


def test_synthetic_split_keeps_groups_together_and_removes_duplicates():
    result = build_split(synthetic())
    part_of = {r.id: p for p, recs in result.parts.items() for r in recs}
    assert part_of["s:pair#1:vul"] == part_of["s:pair#1:fix"] == part_of["s:commit-other"]
    assert part_of["s:cve-a"] == part_of["s:cve-b"]
    assert ("s:dupA" in part_of) != ("s:dupB" in part_of)
    assert "s:confA" not in part_of and "s:confB" not in part_of
    assert result.dropped_conflicts == ["s:confA", "s:confB"]
    assert len(part_of) == len(synthetic()) - 3
    assert all(result.parts[p] for p in PARTS)


def test_split_is_deterministic_and_independent_of_input_order(tmp_path):
    recs = synthetic()
    write_split(build_split(recs), tmp_path / "a")
    write_split(build_split(list(reversed(recs))), tmp_path / "b")
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "SPLIT.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert manifest_hash(tmp_path / "a") == manifest_hash(tmp_path / "b")


def test_load_part_checks_hashes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    recs = synthetic()
    with open(data / "synth.jsonl", "w") as fh:
        for r in recs:
            fh.write(json.dumps(r.to_dict()) + "\n")
    write_split(build_split(load_records(data)), tmp_path / "split")
    test = load_part("test", data, tmp_path / "split")
    manifest = [json.loads(x) for x in (tmp_path / "split" / "test.jsonl").read_text().splitlines()]
    assert [r.id for r in test] == [m["id"] for m in manifest]
    # change one record's code: loading must refuse
    changed = [r.to_dict() for r in recs]
    victim = next(d for d in changed if d["id"] == test[0].id)
    victim["code"] += "\n# edited\n"
    with open(data / "synth.jsonl", "w") as fh:
        for d in changed:
            fh.write(json.dumps(d) + "\n")
    with pytest.raises(DataError, match="changed code"):
        load_part("test", data, tmp_path / "split")
    with pytest.raises(DataError, match="unknown part"):
        load_part("holdout", data, tmp_path / "split")


def test_load_records_reports_bad_lines(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"id": "a", "code": "x", "vulnerable": true, "extra": 1, "cwes": ["cwe-079", "Other"]}\n{"id": "b"\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2"):
        load_records(f)
    f.write_text('{"id": "a", "code": "x", "vulnerable": true, "extra": 1, "cwes": ["cwe-079", "Other"]}\n')
    (r,) = load_records(tmp_path)
    assert r.cwes == ["CWE-79", "Other"] and r.source == "a" and r.lines == []


# ---------------------------------------------------------------- the committed split


def _committed() -> dict[str, str]:
    return {
        json.loads(line)["id"]: part
        for part in PARTS
        for line in (COMMITTED / f"{part}.jsonl").read_text().splitlines()
    }


@needs_data
def test_committed_manifests_match_a_fresh_run(tmp_path):
    run_split(DATA, tmp_path)
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "SPLIT.json", "SPLIT.md"):
        assert (tmp_path / name).read_text() == (COMMITTED / name).read_text(), name


@needs_data
def test_committed_split_has_no_leaks():
    """Recomputed here from the raw data with plain regexes, independent of split.py's keys."""
    part_of = _committed()
    records = {r.id: r for r in load_records(DATA)}
    groups: dict[str, set[str]] = defaultdict(set)
    for rid in part_of:
        r = records[rid]
        groups["norm:" + normalize_code(r.code)].add(rid)
        m = re.search(r"#(\d+):(vul|fix)$", rid)
        if m:
            groups["pair:" + rid[: m.start(2)]].add(rid)
        for sha in re.findall(r"/commit/([0-9a-f]{40})", r.origin):
            groups["commit:" + sha].add(rid)
        for cve in re.findall(r"(?i)CVE-\d{4}-\d+", r.origin):
            groups["cve:" + cve.upper()].add(rid)
    straddling = {k: v for k, v in groups.items() if len({part_of[i] for i in v}) > 1}
    assert not straddling, list(straddling.items())[:3]
    # duplicates were removed: no normalised code occurs twice
    assert all(len(v) == 1 for k, v in groups.items() if k.startswith("norm:"))
    # similar code (Jaccard >= 0.7 on 5-token shingles) stays on one side
    ids = sorted(part_of)
    sets = [shingles(code_tokens(records[i].code)) for i in ids]
    crossing = [(ids[a], ids[b]) for a, b in similar_pairs(sets, 0.7) if part_of[ids[a]] != part_of[ids[b]]]
    assert not crossing, crossing[:3]
    # every sven/safecoder twin whose both halves survived is complete on one side
    pairs = [v for k, v in groups.items() if k.startswith("pair:")]
    assert sum(len(v) == 2 for v in pairs) > 300
