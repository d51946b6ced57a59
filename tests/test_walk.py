"""File discovery: .gitignore, excludes, default skips, symlinks, shebang scripts; safe reading."""

import os
from pathlib import Path

from cwescan.scan.walk import discover, find_base, read_source


def write(root: Path, rel: str, text: str = "x = 1\n") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def found(root: Path, **kw) -> list[str]:
    files, _ = discover([root], root, **kw)
    return [c.relpath for c in files]


def test_finds_python_files_sorted_and_skips_default_folders(tmp_path):
    for rel in ["b.py", "a/c.py", "a/notes.txt", ".venv/lib/x.py", "venv/y.py",
                "pkg/__pycache__/z.py", "build/lib/w.py", "dist/v.py", "node_modules/n.py",
                "proj.egg-info/e.py", "lib/site-packages/s.py", ".tox/t.py", "env/e.py"]:
        write(tmp_path, rel)
    assert found(tmp_path) == ["a/c.py", "b.py"]


def test_gitignore_nested_and_negation(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "generated/\n*_pb2.py\n")
    write(tmp_path, "generated/g.py")
    write(tmp_path, "api_pb2.py")
    write(tmp_path, "sub/.gitignore", "local.py\n!keep_pb2.py\n")
    write(tmp_path, "sub/local.py")
    write(tmp_path, "sub/keep_pb2.py")
    write(tmp_path, "sub/ok.py")
    write(tmp_path, "local.py")  # only ignored inside sub/
    assert found(tmp_path) == ["local.py", "sub/keep_pb2.py", "sub/ok.py"]


def test_named_folder_that_is_git_ignored_is_scanned(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "/vendor\n*.gen.py\n")
    write(tmp_path, "vendor/lib/a.py")
    write(tmp_path, "vendor/lib/b.gen.py")
    write(tmp_path, "vendor/lib/.gitignore", "skip.py\n")
    write(tmp_path, "vendor/lib/skip.py")
    assert found(tmp_path) == []
    files, _ = discover([tmp_path / "vendor" / "lib"], tmp_path)
    assert [c.relpath for c in files] == ["vendor/lib/a.py", "vendor/lib/b.gen.py"]


def test_exclude_globs_and_named_paths_always_scanned(tmp_path):
    write(tmp_path, "src/a.py")
    write(tmp_path, "tests/fixtures/f.py")
    write(tmp_path, "tests/test_a.py")
    write(tmp_path, "examples/demo/app.py")
    excl = ["tests/fixtures/**", "examples/**"]
    assert found(tmp_path, exclude=excl) == ["src/a.py", "tests/test_a.py"]
    # naming an excluded folder scans it; other excludes still apply
    files, _ = discover([tmp_path / "examples" / "demo"], tmp_path, exclude=excl)
    assert [c.relpath for c in files] == ["examples/demo/app.py"]


def test_force_exclude_applies_to_named_files(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "gen_*.py\n")
    named = [write(tmp_path, "src/a.py"), write(tmp_path, "tests/fixtures/f.py"), write(tmp_path, "gen_x.py")]
    files, _ = discover(named, tmp_path, exclude=["tests/fixtures/**"])
    assert len(files) == 3
    files, _ = discover(named, tmp_path, exclude=["tests/fixtures/**"], force_exclude=True)
    assert [c.relpath for c in files] == ["src/a.py"]


def test_symlinks_never_leave_the_tree_and_never_loop(tmp_path):
    outside = tmp_path / "outside"
    write(outside, "secret.py")
    root = tmp_path / "root"
    write(root, "pkg/a.py")
    os.symlink(outside, root / "pkg" / "out_dir")
    os.symlink(outside / "secret.py", root / "linked.py")
    os.symlink(root, root / "pkg" / "loop")  # a loop back to the root
    os.symlink(root / "missing.py", root / "dangling.py")
    os.symlink(root / "pkg", root / "alias")  # inside the tree: files found once
    files, notices = discover([root], root)
    assert [c.relpath for c in files] == ["pkg/a.py"]
    reasons = {n.path: n.reason for n in notices}
    assert reasons == {"linked.py": "symlink-outside-root", "pkg/out_dir": "symlink-outside-root",
                       "dangling.py": "broken-symlink"}


def test_extensionless_python_script_is_found(tmp_path):
    write(tmp_path, "bin/tool", "#!/usr/bin/env python3\nprint(1)\n")
    write(tmp_path, "bin/shell", "#!/bin/sh\necho hi\n")
    assert found(tmp_path) == ["bin/tool"]


def test_find_base_prefers_git_root(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, "src/pkg/a.py")
    assert find_base([tmp_path / "src" / "pkg"]) == tmp_path.resolve()


def test_read_source_encodings(tmp_path):
    p = tmp_path / "latin.py"
    p.write_bytes(b"# -*- coding: latin-1 -*-\nname = '\xe9t\xe9'\n")
    r = read_source(p, "latin.py")
    assert r.notice is None and "été" in r.text
    p = tmp_path / "bad.py"
    p.write_bytes(b"name = '\xe9t\xe9'\n")
    r = read_source(p, "bad.py")
    assert r.text is None and r.notice.reason == "undecodable"
    p = tmp_path / "bom.py"
    p.write_bytes(b"\xef\xbb\xbfx = 1\r\ny = 2\r\n")
    assert read_source(p, "bom.py").text == "x = 1\ny = 2\n"


def test_read_source_size_limit(tmp_path):
    p = tmp_path / "big.py"
    p.write_text("x = 1\n" * 1000)
    assert read_source(p, "big.py", max_size=1000).notice.reason == "too-large"
    assert read_source(p, "big.py", max_size=10_000).notice is None
