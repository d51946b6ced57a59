"""Data flow across the files of one scan: outside data a view hands to a helper in another
module is the helper's source (``cwescan.core.handoffs``, ``scan/across_files.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.core.handoffs import CallIndex, Handoff, module_names

FIXTURES = Path(__file__).parent / "fixtures" / "across_files"


def _scan(*paths: Path, jobs: int = 1) -> dict:
    args = ["scan", *map(str, paths), "-d", "static", "-f", "json", "-q", "--fail-on", "none",
            "--no-cache", "--min-confidence", "0", "--jobs", str(jobs)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _by_place(doc: dict) -> dict[tuple[str, int], dict]:
    return {(f["path"].split("across_files/")[-1], f["line_number"]): f for f in doc["findings"]}


@pytest.mark.parametrize("jobs", [1, 2])
def test_helpers_receive_what_views_in_other_files_hand_them(jobs):
    found = _by_place(_scan(FIXTURES, jobs=jobs))
    report = found[("shop/helpers.py", 8)]  # views.report: helpers.run_report(request.args["name"])
    assert report["rule_id"] == "CWS078" and report["confidence"] == 0.9
    assert "request data (request.args), passed as `name` by" in report["explanation"]
    assert "shop/views.py:13, in report()" in report["explanation"]
    login = found[("flat/libuser.py", 7)]  # app.py: libuser.login(request.form[...], password=...)
    assert login["rule_id"] == "CWS089" and login["confidence"] == 0.9
    # quoted before it is handed: no command injection in archive()
    assert ("shop/helpers.py", 13) not in found
    # a method of a class: not followed
    assert found[("shop/helpers.py", 24)]["confidence"] < 0.9
    # two files named utils.py: the one beside the caller (flat/tools.py imports its neighbour)
    assert found[("flat/utils.py", 5)]["confidence"] == 0.9
    assert found[("other/utils.py", 5)]["confidence"] == 0.55


def test_a_helper_scanned_without_its_callers_keeps_the_weak_source():
    found = _by_place(_scan(FIXTURES / "shop" / "helpers.py"))
    weak = [f for f in found.values() if f["path"].endswith("helpers.py") and f["rule_id"] == "CWS078"]
    assert weak and all(f["confidence"] == 0.55 for f in weak)


def test_module_names_and_the_index():
    assert module_names("app/helpers.py") == ["app.helpers", "helpers"]
    assert module_names("app/__init__.py") == ["app"]
    assert module_names("my-app/helpers.py") == ["helpers"]  # not importable as my-app.helpers
    index = CallIndex(["app/helpers.py", "app/views.py", "lib/helpers.py", "a/x/util.py", "a/y/util.py"])
    h = Handoff("app.helpers.run", 0, None, "request", "request data (request.args)", "app/views.py", 3)
    near = Handoff("helpers.run", 0, None, "request", "x", "app/views.py", 4)
    index.add("app/views.py", [h, near, Handoff("views.self_call", 0, None, "request", "x", "app/views.py", 5)])
    # two files named helpers.py: the caller's neighbour; a file's call of itself is its own
    # business (callers.py); two files equally near: left out
    index.add("a/main.py", [Handoff("util.run", 0, None, "request", "x", "a/main.py", 1)])
    assert index.incoming() == {"app/helpers.py": {"run": [h, near]}}


def test_only_what_a_remote_client_chose_is_handed_on(tmp_path):
    """The command line is the program's own user's choice, and a parameter named ``request``
    in a file importing no web framework is some other request (an installer's requirement,
    an HTTP client's request): neither makes a helper's parameter a remote client's data."""
    (tmp_path / "helpers.py").write_text("import os\n\n\ndef run(command):\n    os.system(command)\n")
    (tmp_path / "cli.py").write_text("import sys\n\nimport helpers\n\nhelpers.run(sys.argv[1])\n")
    (tmp_path / "client.py").write_text(
        "import requests\n\nimport helpers\n\n\ndef send(request, proxies):\n    helpers.run(request.url)\n")
    found = _by_place(_scan(tmp_path))
    (finding,) = [f for f in found.values() if f["path"].endswith("helpers.py")]
    assert finding["confidence"] == 0.55
