"""The model result cache, end to end with a tiny random SLM: a second scan of an unchanged
tree serves every reviewed unit from the cache without loading the model, an edit re-reviews
only what changed, damaged entries are misses, and the store stays within its size bound."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from cwescan.scan.cache import ResultCache  # noqa: E402
from cwescan.detectors.slm import SLMDetector  # noqa: E402
from cwescan.detectors.static import StaticDetector  # noqa: E402
from cwescan.scan.pipeline import ScanOptions, scan  # noqa: E402

from slm_helpers import tiny_slm_artifact  # noqa: E402

APP = '''import os
import subprocess


def run(cmd):
    os.system("ls " + cmd)


def listing(path):
    return subprocess.check_output(["ls", path])


def add(a, b):
    return a + b
'''
UTIL = '''def double(x):
    return 2 * x


class Box:
    def get(self, key):
        return self.items[key]
'''


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return tiny_slm_artifact(tmp_path_factory.mktemp("tiny-slm"))


def _tree(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "app.py").write_text(APP)
    (root / "util.py").write_text(UTIL)
    return root


def _scan(root, adapter, cache, review="triage"):
    slm = SLMDetector(model=adapter, precision="fp32")
    report = scan([root], ScanOptions(detectors=[], review=review, cache=cache),
                  detectors=[StaticDetector(), slm])
    findings = [json.dumps(r.to_dict(), sort_keys=True) for r in report.findings]
    return report.stats["model_stage"], findings, slm


def test_second_scan_runs_no_model(tmp_path, adapter):
    root = _tree(tmp_path)
    cache = ResultCache(tmp_path / "cache")
    cold, cold_findings, slm = _scan(root, adapter, cache)
    # reviewed: run (static finding), listing (sink); cleared: app.py's module unit (imports
    # only), add, util.py's module unit (class Box:), double and Box.get
    assert cold["units"] == 7 and cold["reviewed"] == 2 and cold["cleared"] == 5 and cold["cached"] == 0
    assert cold["reasons"] == {"no-surface": 5, "sink": 1, "static-finding": 1}
    assert slm._model is not None and slm.stats["units"] == 2
    assert any("slm" in f for f in cold_findings)  # threshold 0: the model flags what it reviews

    warm, warm_findings, slm = _scan(root, adapter, ResultCache(tmp_path / "cache"))
    assert warm["reviewed"] == 0 and warm["cached"] == 2 and warm["cleared"] == 5
    assert slm._model is None, "a fully cached scan must not even load the model"
    assert warm_findings == cold_findings

    (root / "app.py").write_text(APP.replace("return a + b", "return a - b"))
    edited, _, slm = _scan(root, adapter, ResultCache(tmp_path / "cache"))
    # `add` has no surface: nothing reviewed is different, all still cached
    assert edited["reviewed"] == 0 and edited["cached"] == 2
    (root / "app.py").write_text(APP.replace('["ls", path]', '["ls", "-l", path]'))
    edited, _, slm = _scan(root, adapter, ResultCache(tmp_path / "cache"))
    assert edited["reviewed"] == 1 and edited["cached"] == 1 and slm.stats["units"] == 1


def test_review_all_and_no_cache(tmp_path, adapter):
    root = _tree(tmp_path)
    stage, _, slm = _scan(root, adapter, None, review="all")
    assert stage["reviewed"] == stage["units"] == 7 and stage["cleared"] == 0 and stage["cached"] == 0
    stage, _, _ = _scan(root, adapter, None)
    assert stage["reviewed"] == 2 and stage["cached"] == 0


def test_key_changes_with_threshold_and_precision(tmp_path, adapter):
    from cwescan.scan.cache import model_key

    a = SLMDetector(model=adapter, precision="fp32")
    assert model_key(a) == model_key(SLMDetector(model=adapter, precision="fp32"))
    assert model_key(a) != model_key(SLMDetector(model=adapter, precision="bf16"))
    assert model_key(a) != model_key(SLMDetector(model=adapter, precision="fp32", threshold=0.7))


def test_damaged_entries_are_misses(tmp_path, adapter):
    root = _tree(tmp_path)
    cache_dir = tmp_path / "cache"
    _scan(root, adapter, ResultCache(cache_dir))
    entries = sorted((cache_dir / "results").glob("*/*.json"))
    assert len(entries) == 2
    entries[0].write_text("{not json")
    entries[1].write_text(json.dumps({"format": 1, "key": "someone else's", "findings": []}))
    cache = ResultCache(cache_dir)
    stage, _, _ = _scan(root, adapter, cache)
    assert stage["reviewed"] == 2 and stage["cached"] == 0 and cache.errors == 2
    stage, _, _ = _scan(root, adapter, ResultCache(cache_dir))
    assert stage["cached"] == 2  # rewritten
    assert not list((cache_dir / "results").glob("*/.tmp-*"))


def test_prune_keeps_the_store_bounded(tmp_path):
    from cwescan.core.findings import Finding

    cache = ResultCache(tmp_path / "c", max_bytes=4000)
    f = Finding("a.py", 3, 3, "CWE-78", "SLM", "t", "m" * 200, 0.9, "high", "slm", {"unit": "f"})
    for i in range(40):
        assert cache.put(f"{i:064x}", [f])
        os.utime(cache._path(f"{i:064x}"), (1000 + i, 1000 + i))
    removed = cache.prune()
    left = sorted(p.name for p in (tmp_path / "c" / "results").glob("*/*.json"))
    assert removed > 0 and sum((tmp_path / "c" / "results" / n[:2] / n).stat().st_size for n in left) <= 4000
    assert f"{39:064x}.json" in left and f"{0:064x}.json" not in left  # least recently used go first


def test_cache_root_from_environment(tmp_path, monkeypatch):
    from cwescan.scan.cache import default_root

    monkeypatch.setenv("CWESCAN_CACHE", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x"
    monkeypatch.delenv("CWESCAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "cwescan"
