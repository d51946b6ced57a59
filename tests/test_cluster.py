"""Scanning on a real Ray cluster of two nodes on this machine (loopback only): the report is
byte-identical to a local scan of the same tree, also when a file worker and a model actor
are killed mid-scan, and a scan without --cluster never imports Ray."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VULNAPP = ROOT / "examples" / "vulnapp" / "vulnapp"


def test_scan_without_cluster_never_imports_ray(tmp_path):
    probe = (
        "import sys\n"
        "from cwescan.cli import app\n"
        "try:\n"
        "    app(['scan', sys.argv[1], '--detector', 'static', '--format', 'json', '--quiet',\n"
        "         '--output', sys.argv[2], '--fail-on', 'none'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('ray' in sys.modules, any(m.startswith('cwescan.cluster') for m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-c", probe, str(VULNAPP), str(tmp_path / "r.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    assert json.loads((tmp_path / "r.json").read_text())["findings"]


def _repo(root: Path, remote: str) -> Path:
    """A git work tree holding a copy of the demo app, with an origin remote."""
    shutil.copytree(VULNAPP, root / "app")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin", remote], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com",
                    "commit", "-q", "-m", "init"], check=True)
    return root


def _two_repos(tmp_path: Path) -> list[Path]:
    return [_repo(tmp_path / "fleet" / "alpha", "https://example.com/org/alpha.git"),
            _repo(tmp_path / "fleet" / "beta", "https://example.com/org/beta.git")]


def test_several_repositories_each_finding_names_its_own(tmp_path):
    from cwescan.output.sarif import sarif_dict
    from cwescan.detectors import create_detectors
    from cwescan.scan.pipeline import ScanOptions, scan

    repos = _two_repos(tmp_path)
    report = scan(repos, ScanOptions(detectors=["static"]), detectors=create_detectors(["static"]))
    doc = json.loads(_render(report, "json"))
    assert [r["name"] for r in doc["repositories"]] == ["alpha", "beta"]
    head = subprocess.run(["git", "-C", str(repos[0]), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert doc["repositories"][0]["revision"] == head
    assert doc["repositories"][0]["remote"] == "https://example.com/org/alpha.git"
    for f in doc["findings"]:
        assert f["path"].startswith(f["repository"] + "/")
    assert {f["repository"] for f in doc["findings"]} == {"alpha", "beta"}
    runs = sarif_dict(report)["runs"]
    # GitHub takes one run per tool and category: one run per repository, each its own category
    assert [r["automationDetails"]["id"] for r in runs] == ["cwescan/alpha/", "cwescan/beta/"]
    for run, repo in zip(runs, repos):
        assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"
        assert run["versionControlProvenance"][0]["repositoryUri"].endswith(repo.name + ".git")
        uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
        assert uris and all(u.startswith("app/") for u in uris)
    assert sum(len(r["results"]) for r in runs) == len(doc["findings"])
    # one repository: the report is as before (no repository field, one run)
    single = scan([repos[0]], ScanOptions(detectors=["static"]), detectors=create_detectors(["static"]))
    assert "repositories" not in json.loads(_render(single, "json"))
    assert "automationDetails" not in sarif_dict(single)["runs"][0]


def _render(report, fmt: str) -> str:
    from cwescan import output

    buffer = io.StringIO()
    output.write(report, fmt, buffer)
    return buffer.getvalue()


ray = pytest.importorskip("ray")
pytest.importorskip("psutil")

from cwescan.cluster import runtime  # noqa: E402
from cwescan.cluster.executor import RayExecutor  # noqa: E402
from cwescan.detectors import create_detectors  # noqa: E402
from cwescan.scan.pipeline import ScanOptions, scan  # noqa: E402


def _tree(root: Path, copies: int) -> Path:
    """``copies`` copies of the demo app in their own packages, plus files that must be
    reported as skipped or partly scanned."""
    for i in range(copies):
        shutil.copytree(VULNAPP, root / f"pkg{i:02d}")
    (root / "broken.py").write_text("def f(:\n    pass\n")
    (root / "blob.py").write_bytes(b"\x00\x01\x02\x03" * 64)
    (root / "empty.py").write_text("")
    return root


def _report(paths, names, executor=None, adapter=None, review="triage", progress=None) -> dict[str, str]:
    detectors = create_detectors(names, "fp32", str(adapter) if adapter else None)
    options = ScanOptions(detectors=names, precision="fp32", review=review)
    report = scan(paths, options, detectors=detectors, executor=executor, progress=progress)
    return {fmt: _render(report, fmt) for fmt in ("json", "sarif")}


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node, 1 CPU each, as separate `ray start` process trees."""
    with runtime.LocalCluster(workers=1, cpus_per_node=1) as local:
        local.connect()
        try:
            yield local
        finally:
            runtime.disconnect()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from slm_helpers import tiny_slm_artifact

    return tiny_slm_artifact(tmp_path_factory.mktemp("tiny-slm"))


def _processes(cluster: runtime.LocalCluster, title: str) -> list:
    """Worker processes of ``cluster`` whose title (set by Ray while a task runs) starts
    with ``title``."""
    import psutil

    found = []
    for node in cluster._nodes:
        try:
            procs = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if cmd.startswith(title):
                found.append(p)
    return found


@pytest.mark.slow
def test_cluster_report_is_byte_identical_to_local(cluster, adapter, tmp_path):
    tree = _tree(tmp_path / "tree", copies=12)
    names = ["static", "slm"]
    local = _report([tree], names, adapter=adapter, review="all")
    executor = RayExecutor(precision="fp32", slm_model=str(adapter))
    try:
        remote = _report([tree], names, executor=executor, adapter=adapter, review="all")
        nodes = {w["node"] for w in executor.where["slm"]}
    finally:
        executor.close()
    assert len(nodes) == 2  # one model actor on each node
    doc = json.loads(local["json"])
    assert doc["stats"]["model_stage"]["reviewed"] > 256  # more than one batch of units
    assert {s["reason"] for s in doc["skipped"]} >= {"syntax-error", "binary", "empty"}
    assert remote["json"] == local["json"]
    assert remote["sarif"] == local["sarif"]


@pytest.mark.slow
def test_several_repositories_share_the_cluster(cluster, adapter, tmp_path):
    repos = _two_repos(tmp_path)
    local = _report(repos, ["static", "slm"], adapter=adapter)
    executor = RayExecutor(precision="fp32", slm_model=str(adapter))
    try:
        remote = _report(repos, ["static", "slm"], executor=executor, adapter=adapter)
    finally:
        executor.close()
    assert remote == local
    assert {f["repository"] for f in json.loads(remote["json"])["findings"]} == {"alpha", "beta"}


@pytest.mark.slow
def test_killed_worker_and_actor_lose_nothing(cluster, adapter, tmp_path):
    import psutil

    tree = _tree(tmp_path / "tree", copies=16)
    names = ["static", "slm"]
    local = _report([tree], names, adapter=adapter, review="all")
    killed: dict[str, int] = {"files": 0, "slm units": 0}
    titles = {"files": "ray::scan_files", "slm units": "ray::ModelWorker.detect"}

    def kill_one(stage: str, done: int, total: int) -> None:
        # once per stage, while work of that stage is still running somewhere
        if stage in killed and not killed[stage] and 0 < done < total:
            for p in _processes(cluster, titles[stage])[:1]:
                try:
                    p.kill()
                    killed[stage] += 1
                except psutil.NoSuchProcess:
                    pass

    executor = RayExecutor(precision="fp32", slm_model=str(adapter))
    try:
        remote = _report([tree], names, executor=executor, adapter=adapter, review="all",
                         progress=kill_one)
    finally:
        executor.close()
    assert killed["files"] == 1, "no file task was running to kill"
    assert killed["slm units"] == 1, "no model call was running to kill"
    assert remote["json"] == local["json"]
    doc = json.loads(remote["json"])
    assert doc["stats"]["files_scanned"] == 16 * 7 + 2  # every copy, empty.py and broken.py
    assert not [s for s in doc["skipped"] if s["reason"] == "worker-lost"]
