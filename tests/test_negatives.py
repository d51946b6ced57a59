"""The realistic-negatives corpus builder on a tiny fake site-packages tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cwescan.data.negatives import (
    NegativesError,
    build_negatives,
    canonical_name,
    discover_packages,
    package_part,
)
from cwescan.data.records import Record

SINK = "import subprocess\n\n\ndef run_tool(args):\n    return subprocess.run(['tool', *args], check=True)\n"
NO_SURFACE = "def add(a, b):\n    return a + b\n"
SOURCE = "import os\n\n\ndef home():\n    return os.environ.get('HOME', '/')\n"
LABELLED = "import subprocess\n\n\ndef labelled(cmd):\n    subprocess.call(cmd, shell=True)\n"


def _dist(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    rows = []
    for rel, text in files.items():
        p = site / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        rows.append(f"{rel},sha256=x,{len(text)}")
    rows.append(f"{info.name}/METADATA,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def _names_in(part: str, n: int = 400) -> list[str]:
    return [f"pkg{i}" for i in range(n) if package_part(f"pkg{i}") == part]


@pytest.fixture
def site(tmp_path) -> Path:
    site = tmp_path / "site-packages"
    test_name, train_name = _names_in("test")[0], _names_in("train")[0]
    _dist(site, train_name, "1.0", {
        f"{train_name}/__init__.py": SINK + "\n\n" + NO_SURFACE.replace("add", "plus"),
        f"{train_name}/labelled.py": LABELLED,
        f"{train_name}/broken.py": "def broken(:\n",
    })
    _dist(site, test_name, "2.3", {f"{test_name}/env.py": SOURCE, f"{test_name}/copy.py": SINK})
    # a file no RECORD lists belongs to its top-level folder
    (site / "loose").mkdir()
    (site / "loose" / "m.py").write_text(NO_SURFACE)
    return site


def test_package_split_is_a_deterministic_function_of_the_canonical_name():
    assert package_part("Markdown_It.Py") == package_part("markdown-it-py") == package_part("markdown-it-py")
    assert canonical_name("Markdown_It.Py") == "markdown-it-py"
    parts = [package_part(f"pkg{i}") for i in range(1000)]
    share = {p: parts.count(p) / len(parts) for p in ("train", "validation", "test")}
    assert 0.1 < share["test"] < 0.2 and 0.1 < share["validation"] < 0.2 and share["train"] > 0.6
    assert package_part("pkg1", salt="other") in ("train", "validation", "test")


def test_packages_come_from_dist_info_records(site):
    pkgs = {p.name: p for p in discover_packages(site)}
    test_name, train_name = _names_in("test")[0], _names_in("train")[0]
    assert pkgs[train_name].version == "1.0" and len(pkgs[train_name].files) == 3
    assert pkgs[test_name].files == [f"{test_name}/copy.py", f"{test_name}/env.py"]
    assert pkgs["loose"].files == ["loose/m.py"] and pkgs["loose"].version == ""


def test_corpus_keeps_triaged_units_dedupes_and_writes_a_manifest(site, tmp_path):
    out = tmp_path / "neg"
    labelled = [Record("lab:1", "lab", LABELLED, True, ["CWE-78"], [5])]
    m = build_negatives(site, out, labelled, workers=1, command="cwescan data negatives ...")
    test_name, train_name = _names_in("test")[0], _names_in("train")[0]
    rows = {p: [json.loads(x) for x in (out / f"{p}.jsonl").read_text().splitlines()]
            for p in ("train", "validation", "test")}
    train_ids = [r["id"] for r in rows["train"]]
    # the sink-calling function is kept, the plain one is not (triage would clear it)
    assert any(i.endswith(":run_tool:4") for i in train_ids) and not any(":plus:" in i for i in train_ids)
    # the labelled record's function is dropped (same normalised code)
    assert not any(":labelled:" in i for i in train_ids)
    # the test package's copy of run_tool repeats train code (sorted by package: first kept)
    test_ids = [r["id"] for r in rows["test"]]
    first = min(train_name, test_name)
    assert sum(":run_tool:" in i for i in train_ids + test_ids) == 1
    assert any(i.startswith(f"neg:{first}:") and ":run_tool:" in i for i in train_ids + test_ids)
    assert any(":home:" in i for i in test_ids)
    assert all(r["vulnerable"] is False and r["code"].startswith(("def", "import", "@")) for p in rows.values() for r in p)
    by_name = {p["name"]: p for p in m["packages"]}
    assert by_name[train_name]["version"] == "1.0" and by_name[train_name]["part"] == "train"
    assert by_name[train_name]["dropped_labelled"] == 1 and by_name[train_name]["unparsed_files"] == 1
    assert by_name[test_name]["part"] == "test" and by_name[test_name]["source_lines"] == 10
    assert len(by_name[test_name]["files_sha256"]) == 64
    assert m["command"] == "cwescan data negatives ..." and m["split"]["salt"]
    assert m["parts"]["test"]["kept_units"] == len(rows["test"])
    again = build_negatives(site, tmp_path / "neg2", labelled, workers=1, command="cwescan data negatives ...")
    assert again["packages_sha256"] == m["packages_sha256"]  # reproducible


def test_rebuilding_only_the_held_out_packages(site, tmp_path):
    test_name = _names_in("test")[0]
    m = build_negatives(site, tmp_path / "held", [], only=[test_name.upper()], parts=["test"], workers=1)
    assert [p["name"] for p in m["packages"]] == [test_name]
    assert not (tmp_path / "held" / "train.jsonl").exists()
    with pytest.raises(NegativesError):
        build_negatives(site, tmp_path / "x", [], only=["no-such-package"], workers=1)
    with pytest.raises(NegativesError):
        build_negatives(tmp_path / "missing", tmp_path / "y", [], workers=1)


def test_trainer_samples_negatives_at_the_ratio(site, tmp_path):
    from cwescan.train.slm import SLMRecipe, load_negatives

    out = tmp_path / "neg"
    build_negatives(site, out, [], workers=1)
    recs = [Record("r:1", "r", SINK + "\n\n" + SOURCE.replace("import os\n\n\n", "import os\n"), False)]
    none = load_negatives(SLMRecipe(name="x"), recs)
    assert none == {"train": [], "validation": [], "manifest_hash": None}
    # 3 labelled units (module + 2 functions) x 0.34 -> 1 of the 2 train units of the corpus
    got = load_negatives(SLMRecipe(name="x", negatives_dir=str(out), negatives_ratio=0.34), recs)
    assert len(got["train"]) == 1 and got["manifest_hash"]
    again = load_negatives(SLMRecipe(name="x", negatives_dir=str(out), negatives_ratio=0.34), recs)
    assert [r.id for r in again["train"]] == [r.id for r in got["train"]]  # deterministic in the seed
    assert len(load_negatives(SLMRecipe(name="x", negatives_dir=str(out), negatives_ratio=5.0), recs)["train"]) == 2
    assert all(not r.vulnerable for r in got["train"])


def test_training_mixes_negatives_in_and_selects_on_the_mix(site, tmp_path, monkeypatch):
    """A tiny random Llama trained for one epoch with realistic negatives: the negatives count,
    the corpus hash and the mix AUC reach the card."""
    from slm_helpers import tiny_base

    from cwescan.train.slm import run

    neg = tmp_path / "neg"
    build_negatives(site, neg, [], workers=1)
    # the validation part of the fake tree may be empty: give it one unit of a train package
    (neg / "validation.jsonl").write_text((neg / "train.jsonl").read_text().splitlines()[0] + "\n")
    tiny_base(tmp_path / "base")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"name: tiny\nbase_dir: {tmp_path / 'base'}\nlora_r: 4\nlora_alpha: 8\nepochs: 1\n"
                      "batch_size: 8\nmax_tokens: 256\nselect_on: mix_auc\nnegatives_dir: ${TINY_NEGATIVES}\n"
                      "negatives_ratio: 1.0\n")
    recs = [Record("t#0:vul", "t", LABELLED, True, ["CWE-78"], [5]), Record("t#0:fix", "t", SINK, False)]
    monkeypatch.setenv("TINY_NEGATIVES", str(neg))  # recipes name the corpus through a variable
    card = run(recipe, out=tmp_path / "adapter", device="cpu", train_records=recs, validation_records=recs)
    assert card["train_negative_units"] >= 1 and card["negatives_manifest_hash"]
    assert card["negatives_manifest_hash"] == json.loads((neg / "MANIFEST.json").read_text())["packages_sha256"]
    assert "validation_mix_auc" in card["validation"] and card["recipe"]["negatives_ratio"] == 1.0
