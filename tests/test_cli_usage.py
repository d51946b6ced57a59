"""Everyday use of the command line: progress in CI logs, quiet runs, version, wording, help,
and paths that do not depend on the folder a scan is started from."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cwescan import __version__
from cwescan.cli import app
from cwescan.cli.progress import ProgressLog, scan_progress

VULN = 'import os\n\ndef run(x):\n    os.system("ls " + input())\n'


def cwescan(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed command as a user runs it: its own process, no terminal."""
    return subprocess.run([sys.executable, "-m", "cwescan", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_log_prints_a_line_per_interval_with_eta():
    clock, out = FakeClock(), io.StringIO()
    log = ProgressLog(out, interval=10, clock=clock)
    log("files", 1, 100)  # at start: nothing yet
    clock.now += 5
    log("files", 40, 100)  # 5 s in: still inside the first interval
    assert out.getvalue() == ""
    clock.now += 5
    log("files", 50, 100)  # 10 s in: one line, with the stage's own rate for the ETA
    lines = out.getvalue().splitlines()
    assert lines == ["cwescan: progress: files 50/100 (50 %); 10 s elapsed, ETA 10 s for files"]
    clock.now += 1
    log("files", 60, 100)  # 1 s after the last line: no new line
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 20
    log("slm units", 3, 12)
    last = out.getvalue().splitlines()[-1]
    assert "files 60/100 (60 %); slm units 3/12 (25 %); 31 s elapsed" in last
    assert "ETA" not in last  # the model stage has just started: no rate yet


def test_scan_progress_picks_bar_lines_or_nothing():
    with scan_progress(quiet=True) as hook:
        assert hook is None
    with scan_progress(quiet=False, stream=io.StringIO()) as hook:  # not a terminal
        assert isinstance(hook, ProgressLog)


def test_ci_log_gets_progress_lines_and_quiet_gets_nothing(tmp_path):
    for i in range(3):
        (tmp_path / f"m{i}.py").write_text(VULN)
    # no terminal (as in CI): plain progress lines on stderr; an interval of 0 prints every update
    r = cwescan("scan", ".", "-d", "static", "-f", "json", cwd=tmp_path,
                env={"CWESCAN_PROGRESS_INTERVAL": "0"})
    progress = [line for line in r.stderr.splitlines() if line.startswith("cwescan: progress:")]
    assert progress and progress[-1].startswith("cwescan: progress: files 3/3 (100 %)")
    # --quiet: not one byte on stderr, even with every Python warning turned on and source
    # text that makes the parser warn (invalid escape sequences)
    (tmp_path / "warns.py").write_text('import re\nPATTERN = re.compile("\\d+")\n')
    r = cwescan("scan", ".", "-d", "static", "--quiet", cwd=tmp_path,
                env={"PYTHONWARNINGS": "default", "CWESCAN_PROGRESS_INTERVAL": "0"})
    assert r.returncode == 1 and r.stderr == ""


def test_version_and_singular_wording(tmp_path):
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"cwescan {__version__}"
    (tmp_path / "one.py").write_text(VULN)
    r = cwescan("scan", "one.py", "-d", "static", "--fail-on", "none", cwd=tmp_path)
    assert "1 finding (1 high) in 1 file scanned (2 units)" in r.stdout  # input(): one below critical
    assert "cwescan: 1 finding, 0 at or above --fail-on none; 1 file in" in r.stderr


def test_help_keeps_every_option_name_whole_at_80_columns(tmp_path):
    r = cwescan("scan", "--help", cwd=tmp_path, env={"COLUMNS": "80", "TERM": "dumb"})
    assert r.returncode == 0
    for option in ("--detector", "--min-confidence", "--write-baseline", "--force-exclude",
                   "--max-file-size", "--file-timeout", "--no-cache", "--slm-model"):
        assert option in r.stdout, option
    assert all(len(line) <= 80 for line in r.stdout.splitlines())


def test_baseline_matches_from_any_folder_and_warns_when_it_matches_nothing(tmp_path):
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (project / "app" / "a.py").write_text(VULN)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    baseline = tmp_path / "baseline.json"
    r = cwescan("scan", "app", "-d", "static", "--write-baseline", str(baseline), cwd=project)
    assert r.returncode == 1
    assert json.loads(baseline.read_text())["findings"][0]["path"] == "app/a.py"  # project-relative
    # the same project scanned from another folder, by the folder or by the file: all baselined
    for target in (project, project / "app", project / "app" / "a.py"):
        r = cwescan("scan", str(target), "-d", "static", "-f", "json", "--baseline", str(baseline),
                    cwd=elsewhere)
        doc = json.loads(r.stdout)
        assert r.returncode == 0 and doc["findings"] == [] and doc["stats"]["baselined"] == 1
        assert "warning" not in r.stderr
    # a baseline from another project matches nothing: said, not silent
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.py").write_text(VULN)
    r = cwescan("scan", ".", "-d", "static", "--baseline", str(baseline), cwd=other)
    assert r.returncode == 1
    assert "warning: baseline" in r.stderr and "matched none of its 1 entry" in r.stderr


def test_exclude_patterns_are_anchored_at_the_project_root_and_unused_ones_warned(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.cwescan]\nexclude = ["gen/**", "typo/**"]\n')
    for folder in ("gen", "src"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.py").write_text(VULN)
    # from the project root and from a subfolder the same patterns leave out the same files
    for cwd, target in ((tmp_path, "."), (tmp_path / "src", "..")):
        r = cwescan("scan", target, "-d", "static", "-f", "json", "--exclude", "nowhere/*.py",
                    "--fail-on", "none", cwd=cwd)
        assert [f["path"] for f in json.loads(r.stdout)["findings"]] == ["src/m.py"]
        assert "warning: exclude pattern 'typo/**' matched nothing" in r.stderr
        assert "warning: exclude pattern 'nowhere/*.py' matched nothing" in r.stderr
        assert "'gen/**'" not in r.stderr
    # scanning only a subfolder leaves project-wide config patterns unused: no warning then
    r = cwescan("scan", "src", "-d", "static", "--fail-on", "none", cwd=tmp_path)
    assert "warning" not in r.stderr
