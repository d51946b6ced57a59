"""Triage worked out in the worker processes (``cwescan.scan.review``) sends the model stage the
same units, with the same reasons, as triage in the parent; and ``core.astwalk.walk`` yields
``ast.walk``'s nodes in its order."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

from conftest import KeywordModel

from cwescan.core.astwalk import walk
from cwescan.detectors.static import StaticDetector
from cwescan.scan.pipeline import ScanOptions, scan

FILES = {
    "a.py": "import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)\n\ndef pure(x):\n    return x + 1\n",
    "b.py": "from flask import request\n\ndef view():\n    q = request.args['q']\n    return q\n",
    "c.py": "def add(a, b):\n    return a + b\n\nclass K:\n    def m(self):\n        return 1\n",
    "d.py": "import pickle\nimport subprocess\n\ndef load(b):\n    return pickle.loads(b)\n\n"
            "def go(a):\n    subprocess.call('x' + 'y' + a, shell=True)\n",
    "e.py": "def broken(:\n    pass\n",
}


class Recording(KeywordModel):
    """Remembers every unit the model stage hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    def detect(self, units, hints=None):
        self.seen.extend((u.path, u.qualname, u.start_line) for u in units)
        return super().detect(units, hints)


def test_worker_triage_sends_the_units_parent_triage_sends(tmp_path):
    for i in range(12):  # enough files for the worker pool
        for name, text in FILES.items():
            (tmp_path / f"{i:02d}_{name}").write_text(text)
    runs = []
    for jobs in (1, 2):
        model = Recording()
        report = scan([tmp_path], ScanOptions(detectors=["static"], jobs=jobs, first_stage="none", pair="none"),
                      detectors=[StaticDetector(), model])
        stage = report.stats["model_stage"]
        runs.append((sorted(model.seen), stage["reasons"], stage["units"],
                     sorted((r.finding.path, r.finding.start_line, r.finding.rule_id) for r in report.findings)))
    assert runs[0] == runs[1]
    seen, reasons = runs[0][0], runs[0][1]
    assert reasons.get("static-finding") and reasons.get("no-surface") and reasons.get("unparsed")
    assert not any(q.endswith(("pure", "add")) for _, q, _ in seen)


def test_walk_gives_ast_walks_nodes_in_order():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:40]
    assert files
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        assert [id(n) for n in walk(tree)] == [id(n) for n in ast.walk(tree)], path


def test_the_models_read_around_lines_worked_out_with_the_workers_names(tmp_path, monkeypatch):
    # a file the workers found something to review in comes back with its imports and bindings,
    # so the parent's models find their focus lines without walking the whole file again
    from cwescan.core.units import parse_source
    from cwescan.scan import triage

    for i in range(12):  # enough files for the worker pool
        for name, text in FILES.items():
            (tmp_path / f"{i:02d}_{name}").write_text(text)
    walked = []
    whole_file_walk = triage.file_imports
    monkeypatch.setattr(triage, "file_imports", lambda tree: walked.append(tree) or whole_file_walk(tree))
    focus: dict[tuple[str, str], frozenset[int]] = {}

    class Focusing(Recording):
        def detect(self, units, hints=None):
            focus.update({(u.path, u.qualname): triage.focus_lines(u) for u in units})
            return super().detect(units, hints)

    scan([tmp_path], ScanOptions(detectors=["static"], jobs=2, first_stage="none", pair="none"),
         detectors=[StaticDetector(), Focusing()])
    assert focus and not walked
    monkeypatch.setattr(triage, "file_imports", whole_file_walk)
    for (path, qualname), lines in focus.items():
        [unit] = [u for u in parse_source(path, (tmp_path / path).read_text()).units if u.qualname == qualname]
        assert lines == triage.focus_lines(unit)
