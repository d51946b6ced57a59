"""`cwescan scan`: exit codes, config, merging of detectors, determinism, formats, workers."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.detectors import REGISTRY
from conftest import CallDetector, KeywordModel
from cwescan.core.findings import Finding
from cwescan.scan.combine import merge


class EvalDetector(CallDetector):
    name = "t_eval"
    calls = {"eval": ("CWE-95", "critical", 0.9), "md5": ("CWE-328", "medium", 0.6)}


class ExecDetector(CallDetector):
    name = "t_exec"
    calls = {"eval": ("CWE-94", "critical", 0.7), "random": ("CWE-330", "low", 0.3)}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(REGISTRY, "t_eval", f"{__name__}:EvalDetector")
    monkeypatch.setitem(REGISTRY, "t_exec", f"{__name__}:ExecDetector")


def make_tree(root: Path, n_extra: int = 0) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "views.py").write_text("import hashlib\n\n\ndef h(x):\n    return hashlib.md5(x)\n\n\n"
                                           "eval(input())\n")
    (root / "app" / "util.py").write_text("import random\n\nTOKEN = random()\n")
    (root / "clean.py").write_text("def add(a, b):\n    return a + b\n")
    for i in range(n_extra):
        (root / "app" / f"gen_{i:03d}.py").write_text(f"eval('{i}')\n" if i % 7 == 0 else f"x = {i}\n")
    return root


def invoke(*args):
    return CliRunner().invoke(app, ["scan", *map(str, args)])


def test_exit_codes_follow_fail_on(tmp_path):
    root = make_tree(tmp_path)
    assert invoke(root, "-d", "t_eval", "-q").exit_code == 1  # default fail-on high; eval is critical
    assert invoke(root / "clean.py", "-d", "t_eval", "-q").exit_code == 0
    assert invoke(root / "app" / "util.py", "-d", "t_exec", "-q").exit_code == 0  # only a low finding
    assert invoke(root / "app" / "util.py", "-d", "t_exec", "-q", "--fail-on", "low").exit_code == 1
    assert invoke(root, "-d", "t_eval", "-q", "--fail-on", "none").exit_code == 0
    assert invoke(root, "-d", "t_eval", "-q", "--min-confidence", "0.95").exit_code == 0


def test_usage_and_internal_errors_exit_2(tmp_path):
    root = make_tree(tmp_path)
    r = invoke(root, "--format", "xml")
    assert r.exit_code == 2 and "xml" in r.output
    r = invoke(root, "-d", "nope", "-q")
    assert r.exit_code == 2 and "unknown detector" in r.stderr
    r = invoke(tmp_path / "missing", "-d", "t_eval")
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = invoke(root, "-d", "t_eval", "-q", "--output", tmp_path)  # a folder: cannot write
    assert r.exit_code == 2 and "error" in r.stderr


def test_findings_merged_per_line_and_cwe_family(tmp_path):
    root = make_tree(tmp_path)
    r = invoke(root, "-d", "t_eval", "-d", "t_exec", "-f", "json", "-q", "--fail-on", "none")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    by_line = {(f["path"], f["line_number"]): f for f in doc["findings"]}
    evil = by_line[("app/views.py", 8)]
    # CWE-95 (0.9) and CWE-94 (0.7) are one family: one finding, the surer one's fields
    assert evil["detector"] == "t_eval+t_exec" and evil["cwe"] == "CWE-95" and evil["confidence"] == 0.9
    assert evil["detectors"] == {"t_eval": 0.9, "t_exec": 0.7}
    assert len(doc["findings"]) == 3
    assert doc["stats"]["by_detector"] == {"t_eval": 2, "t_exec": 2}
    assert doc["stats"]["detectors"] == ["t_eval", "t_exec"]


def test_merge_keeps_different_families_apart():
    a = Finding("a.py", 3, 3, "CWE-89", "R1", "t", "m", 0.5, "high", "static")
    b = Finding("a.py", 3, 3, "CWE-78", "R2", "t", "m", 0.9, "high", "slm")
    c = Finding("a.py", 3, 4, "CWE-564", "SLM", "t", "m", 0.8, "high", "slm")
    merged = merge([a, b, c])
    assert [(f.cwe, f.detector) for f in merged] == [("CWE-78", "slm"), ("CWE-564", "slm+static")]
    assert merged[1].extra["detectors"] == {"slm": 0.8, "static": 0.5}


def test_json_is_byte_identical_across_scans_and_workers(tmp_path):
    root = make_tree(tmp_path, n_extra=30)
    outputs = []
    for jobs in ("1", "1", "2"):
        r = invoke(root, "-d", "t_eval", "-d", "t_exec", "-f", "json", "-q", "--jobs", jobs)
        assert r.exit_code == 1, r.output
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    doc = json.loads(outputs[0])
    assert doc["stats"]["files_scanned"] == 33
    paths = [(f["path"], f["line_number"], f["cwe"]) for f in doc["findings"]]
    assert paths == sorted(paths)
    assert "time" not in outputs[0]


def test_config_from_pyproject_and_cli_overrides(tmp_path):
    root = make_tree(tmp_path)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.cwescan]\ndetectors = ["t_exec"]\nfail-on = "critical"\n'
        'exclude = ["app/views.py"]\nformat = "json"\n')
    r = invoke(root, "-q")
    assert r.exit_code == 0, r.output  # only util.py's low finding: below critical
    doc = json.loads(r.stdout)
    assert doc["stats"]["detectors"] == ["t_exec"] and doc["stats"]["files_scanned"] == 2
    assert invoke(root, "-q", "--fail-on", "low").exit_code == 1
    r = invoke(root, "-q", "-d", "t_eval", "--exclude", "app/util.py", "-f", "jsonl")
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert records[-1]["kind"] == "stats" and records[-1]["files_scanned"] == 1


def test_bad_config_exits_2(tmp_path):
    root = make_tree(tmp_path)
    (root / "pyproject.toml").write_text('[tool.cwescan]\nfail_on = "sometimes"\n')
    r = invoke(root, "-q")
    assert r.exit_code == 2 and "fail-on" in r.stderr
    (root / "pyproject.toml").write_text('[tool.cwescan]\nexclud = ["x"]\n')
    r = invoke(root, "-q")
    assert r.exit_code == 2 and "unknown key" in r.stderr


def test_text_output_file_and_stderr_notes(tmp_path):
    root = make_tree(tmp_path)
    out = tmp_path / "report.txt"
    r = invoke(root, "-d", "t_eval", "--output", out)
    assert r.exit_code == 1
    assert r.stdout == ""
    assert "detectors: t_eval" in r.stderr
    text = out.read_text()
    assert "app/views.py" in text and "CWE-95" in text and "eval(input())" in text
    assert "\x1b[" not in text  # no colour codes in a file
    assert "2 findings" in text


def test_output_formats_agree(tmp_path):
    root = make_tree(tmp_path)
    docs = {fmt: invoke(root, "-d", "t_eval", "-q", "-f", fmt).stdout for fmt in ("json", "jsonl", "sarif")}
    n_json = len(json.loads(docs["json"])["findings"])
    n_jsonl = sum(json.loads(x)["kind"] == "finding" for x in docs["jsonl"].splitlines())
    n_sarif = len(json.loads(docs["sarif"])["runs"][0]["results"])
    assert n_json == n_jsonl == n_sarif == 2


VULNAPP = Path(__file__).resolve().parents[1] / "examples" / "vulnapp"


def test_demo_app_end_to_end_with_the_static_detector():
    """`cwescan scan examples/vulnapp` with the real static rules finds most of the answer key
    and stays quiet in the safe functions."""
    r = CliRunner().invoke(app, ["scan", str(VULNAPP), "-d", "static", "-f", "json", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)  # the demo's pyproject sets fail-on = "none"
    doc = json.loads(r.stdout)
    key = json.loads((VULNAPP / "ANSWERS.json").read_text())
    prefix = "examples/vulnapp/"
    found = {(f["path"].removeprefix(prefix), f["line_number"], f["cwe"]) for f in doc["findings"]}
    from cwescan.core.cwe import same_family

    hits = [v for v in key["vulnerable"]
            if any(p == v["path"] and line == v["line"] and same_family(c, v["cwe"]) for p, line, c in found)]
    false_alarms = [(p, line, c) for p, line, c in found for s in key["safe"]
                    if p == s["path"] and s["start_line"] <= line <= s["end_line"]]
    assert len(hits) >= 0.75 * len(key["vulnerable"]), sorted(
        (v["path"], v["line"], v["cwe"]) for v in key["vulnerable"] if v not in hits)
    assert len(false_alarms) <= 1, false_alarms
    assert doc["skipped"] == [] and doc["stats"]["files_scanned"] == 7


class PrecisionModel(KeywordModel):
    """A model detector that reports each line of a function that calls ``eval``, and says in
    its message which precision it was built with."""

    def detect(self, units, hints=None):
        out = []
        for u in units:
            for i, line in enumerate(u.code.split("\n"), 1):
                if u.kind == "function" and "eval(" in line:  # the model names the line
                    out.append(Finding(u.path, u.file_line(i), u.file_line(i), "CWE-95", "SLM",
                                       "model verdict", f"precision={self.precision}", 0.8,
                                       "critical", self.name))
        return out


class BrokenModel(KeywordModel):
    def __init__(self, **options):
        raise RuntimeError("weights missing")


def test_precision_reaches_model_detectors_only(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "slm", f"{__name__}:PrecisionModel")
    (tmp_path / "a.py").write_text("def f(x):\n    return eval(x)\n")
    r = invoke(tmp_path, "-d", "static,slm", "--precision", "int8", "-f", "json", "-q")
    assert r.exit_code == 1, (r.output, r.exception)  # static must not be handed precision=
    doc = json.loads(r.stdout)
    [f] = doc["findings"]
    assert f["detector"] == "slm+static" and doc["stats"]["detectors"] == ["static", "slm"]
    assert f["detectors"]["slm"] == 0.8
    r = invoke(tmp_path, "-d", "slm", "--precision", "int4", "-f", "json", "-q")
    assert json.loads(r.stdout)["findings"][0]["explanation"] == "precision=int4"


def test_default_detectors_use_the_slm_when_shipped_and_survive_its_failure(tmp_path, monkeypatch):
    from cwescan import detectors as scanner

    (tmp_path / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(scanner, "slm_available", lambda: (True, ""))
    monkeypatch.setitem(REGISTRY, "slm", f"{__name__}:PrecisionModel")
    r = invoke(tmp_path, "-f", "json")
    assert json.loads(r.stdout)["stats"]["detectors"] == ["static", "slm"]
    assert "detectors: static, slm" in r.stderr
    monkeypatch.setitem(REGISTRY, "slm", f"{__name__}:BrokenModel")
    r = invoke(tmp_path, "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["stats"]["detectors"] == ["static"]
    assert "slm left out" in r.stderr and "weights missing" in r.stderr
    # asked for by name, a detector that cannot start is an error
    r = invoke(tmp_path, "-d", "slm")
    assert r.exit_code == 2 and "weights missing" in r.stderr
    monkeypatch.setattr(scanner, "slm_available", lambda: (False, "no shipped model"))
    r = invoke(tmp_path, "-f", "json")
    assert json.loads(r.stdout)["stats"]["detectors"] == ["static"]
    assert "slm not used: no shipped model" in r.stderr


def test_config_values_sizes_and_baseline_path(tmp_path):
    from cwescan.core import config

    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cwescan]\nmax_file_size = "2MB"\nbaseline = "ci/base.json"\nmin-confidence = 0.25\n'
        'precision = "INT8"\nfile-timeout = 3\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    cfg = config.load(sub)  # found upward from the scan root
    assert cfg.max_file_size == 2_000_000 and cfg.baseline == tmp_path / "ci" / "base.json"
    assert (cfg.min_confidence, cfg.precision, cfg.file_timeout) == (0.25, "int8", 3.0)
    assert config.parse_size("512KiB") == 512 * 1024 and config.parse_size(10) == 10
    with pytest.raises(config.ConfigError):
        config.parse_size("lots")
    with pytest.raises(config.ConfigError, match="min-confidence"):
        config.from_mapping({"min-confidence": 2})
    # the search stops at the git root: a pyproject above it is not this project's
    inner = tmp_path / "vendored"
    (inner / ".git").mkdir(parents=True)
    assert config.load(inner).source is None
