"""The package's structure: no import cycles, output writers that load neither torch nor
Bandit, no reaching into other modules' private names, no probing of detectors."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cwescan"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _top_level_imports(path: Path) -> set[str]:
    """cwescan modules that ``path`` names in its top-level imports (imports inside functions
    are left out: they run later, on use). ``from a.b import c`` counts as an import of the
    module ``a.b.c`` when there is one, else of ``a.b``; the parent packages Python initialises
    on the way are not edges (every package would otherwise be a cycle with its children)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def add(name: str) -> None:
        if name in MODULES:
            found.add(name)

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    add(sub if sub in MODULES else node.module)
            elif isinstance(node, (ast.If, ast.Try)) and not _is_type_checking(node):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def test_no_import_cycles():
    graph = {name: _top_level_imports(path) - {name} for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def walk(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [name, dep])
            elif dep not in state:
                walk(dep, stack + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_output_loads_neither_torch_nor_bandit():
    code = ("import sys, cwescan.output\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'bandit', 'transformers'))\n"
            "scan = sorted(m for m in sys.modules if m.startswith(('cwescan.scan', 'cwescan.detectors')))\n"
            "print(heavy, scan)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert r.stdout.strip() == "[] []", r.stdout


# Private names of other libraries that cwescan uses on purpose, each for a stated reason.
THIRD_PARTY_PRIVATE = {
    "_parse_file",  # Bandit: the only way to check one in-memory file (detectors/bandit_detector.py)
    "_attn_implementation",  # transformers: how a config built in code picks its attention kernel
    "_int_mm", "_scaled_mm",  # torch: the int8 / fp8 GEMM kernels the roofline measures
    "_exit",  # os._exit: leave a forked child without running the parent's atexit handlers
    # torch: the fused CPU flash attention that also returns the log-sum-exp, which merging the
    # cached prefix's attention with the prompt's needs (ml/slm/prefix.py); SDPA hides it
    "_scaled_dot_product_flash_attention_for_cpu",
    # ast: a node class's child field names, documented as public (``ast.AST._fields``); read
    # directly by the hot AST loops (core/astwalk.py, the engine's folding) instead of
    # through the slower ast.iter_fields generator
    "_fields",
}


def test_no_module_reaches_into_another_modules_private_names():
    """``from x import _name``, ``module._name`` and ``obj._name`` on anything but ``self`` /
    ``cls`` are all reaching into someone else's privates."""
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if node.attr in THIRD_PARTY_PRIVATE:
                    continue
                bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_detectors_are_used_through_their_interface():
    """No ``getattr`` / ``hasattr`` / ``inspect`` on a detector: what a detector can do is
    what ``Detector`` and ``ModelDetector`` declare."""
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                target = ast.unparse(node.args[0]) if node.args else ""
                if any(word in target.lower() for word in ("det", "scorer", "slm", "encoder", "model_")):
                    bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "inspect" \
                    and node.attr in ("signature", "getmembers", "getfullargspec"):
                bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_every_command_is_under_the_cwescan_app():
    """No module runs as a program of its own (``python -m`` / argparse side doors)."""
    side_doors = []
    for name, path in MODULES.items():
        text = path.read_text()
        if name == "cwescan.__main__":
            continue
        if "import argparse" in text or 'if __name__ == "__main__"' in text:
            side_doors.append(name)
    assert not side_doors
    from typer.testing import CliRunner

    from cwescan.cli import app

    out = CliRunner().invoke(app, ["--help"]).output
    for command in ("scan", "eval", "eval-slm", "rules", "fuzz", "data", "train", "bench"):
        assert f" {command} " in out, command


def test_only_the_cli_declares_commands():
    """Library modules neither import typer nor the CLI package: importing ``cwescan.cli`` runs
    every command module's registration, so a library module that imported a CLI helper could
    not be imported first (``import cwescan.bench.scan`` once failed on a circular import)."""
    leaks = []
    for name, path in MODULES.items():
        if name.startswith("cwescan.cli") or name == "cwescan.__main__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            leaks += [f"{name}: {t}" for t in targets if t == "typer" or t.startswith(("typer.", "cwescan.cli"))]
    assert not leaks, leaks
    for name in ("cwescan.bench.scan", "cwescan.scan.pipeline", "cwescan.evaluate.mix_scores"):
        r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
        assert r.returncode == 0, r.stderr


MODEL_STACK = ("torch", "transformers", "peft", "tokenizers", "gguf", "accelerate", "safetensors")


def test_core_install_has_no_torch_stack():
    import tomllib

    project = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]
    core = [d.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip() for d in project["dependencies"]]
    assert not set(core) & set(MODEL_STACK), core
    models = {d.split("=")[0].split(">")[0].split("<")[0].strip() for d in project["optional-dependencies"]["models"]}
    assert {"torch", "transformers", "peft", "tokenizers"} <= models


def test_scan_without_the_model_libraries_falls_back_to_static(tmp_path):
    """As after `pip install cwescan` with no extras: the torch stack cannot be imported."""
    (tmp_path / "app.py").write_text("import os\n\n\ndef run(cmd):\n    os.system('sh -c ' + cmd)\n")
    code = ("import sys\n"
            f"for name in {MODEL_STACK!r}:\n"
            "    sys.modules[name] = None  # import fails, find_spec answers None\n"
            "from cwescan.cli import app\n"
            "app(sys.argv[1:])\n")
    env = {"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for args, detectors in ((["--detector", "static"], "static"), ([], "static")):
        r = subprocess.run([sys.executable, "-c", code, "scan", str(tmp_path), "--format", "json",
                            "--no-cache", "--fail-on", "none", *args],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert f"detectors: {detectors}" in r.stderr
        assert '"CWE-78"' in r.stdout
    assert "pip install 'cwescan[models]'" in r.stderr  # the default set says why the model is not used


def test_modules_and_functions_stay_short():
    """No module over 600 lines; no function over 80 lines unless a comment in it says why
    ("# Long ...")."""
    long_modules, long_functions = [], []
    for name, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > 600:
            long_modules.append(name)
        lines = text.split("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                if not any(line.strip().startswith("# Long") for line in lines[node.lineno - 1:node.end_lineno]):
                    long_functions.append(f"{name}.{node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)


def test_core_and_output_depend_on_core_only():
    """core/ is the shared data: it imports no other stage; output/ writes a core Report."""
    bad = []
    for name, path in MODULES.items():
        if not name.startswith(("cwescan.core", "cwescan.output")):
            continue
        for dep in _top_level_imports(path):
            if dep != "cwescan" and not dep.startswith(("cwescan.core", "cwescan.output")):
                bad.append(f"{name} -> {dep}")
    assert not bad, bad
