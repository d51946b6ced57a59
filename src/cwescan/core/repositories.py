"""Which repository each finding belongs to, when one scan covers several.

``cwescan scan repo1 repo2 ...`` reports paths relative to one base folder. Each path named
on the command line belongs to a repository: the git work tree holding it, when that lies
inside the base, else the named folder itself. With two or more repositories every finding
names its own (JSON ``repository``; SARIF: one run per repository, see
``cwescan.output.sarif``). Git metadata is read from the ``.git`` folder's files (HEAD, refs,
config), without running git.
"""

from __future__ import annotations

import configparser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Repository:
    name: str  # its root, posix, relative to the report base ("." for the base itself)
    root_uri: str  # file URI of its root, ending in "/"
    revision: str | None = None  # commit id checked out, when it is a git work tree
    branch: str | None = None
    remote: str | None = None  # the "origin" remote's URL

    def holds(self, path: str) -> bool:
        return self.name == "." or path == self.name or path.startswith(self.name + "/")

    def relative(self, path: str) -> str:
        return path if self.name == "." else path[len(self.name) + 1:]

    def to_dict(self) -> dict:
        d = {"name": self.name, "root": self.root_uri}
        d.update({k: v for k, v in (("revision", self.revision), ("branch", self.branch),
                                    ("remote", self.remote)) if v})
        return d


def _git_root(folder: Path, base: Path) -> Path | None:
    for parent in (folder, *folder.parents):
        if (parent / ".git").exists():
            return parent
        if parent == base:
            break
    return None


def _git_facts(root: Path) -> tuple[str | None, str | None, str | None]:
    """(revision, branch, origin URL) from ``root/.git``; None for what cannot be read."""
    git = root / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        try:
            target = git.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
        except OSError:
            return None, None, None
        git = (root / target).resolve()
    revision = branch = remote = None
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref:"):
            ref = head[4:].strip()
            branch = ref.removeprefix("refs/heads/")
            common = Path((git / "commondir").read_text().strip()) if (git / "commondir").is_file() else None
            for d in filter(None, (git, (git / common).resolve() if common else None)):
                if (d / ref).is_file():
                    revision = (d / ref).read_text(encoding="utf-8").strip()
                    break
                packed = d / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text(encoding="utf-8").splitlines():
                        if line.endswith(" " + ref):
                            revision = line.split()[0]
                            break
                if revision:
                    break
        else:
            revision = head
    except OSError:
        pass
    config = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        config.read(git / "config", encoding="utf-8")
        remote = config.get('remote "origin"', "url", fallback=None)
    except (configparser.Error, OSError):
        pass
    return revision, branch, remote


def find_repositories(paths: Sequence[Path], base: Path) -> list[Repository]:
    """The repositories of ``paths`` (in their order, each once); empty when they are all one,
    so a scan of one repository reports as before."""
    base = base.resolve()
    roots: list[Path] = []
    for p in paths:
        folder = p.resolve() if p.resolve().is_dir() else p.resolve().parent
        root = _git_root(folder, base) or folder
        if root not in roots:
            roots.append(root)
    if len(roots) < 2:
        return []
    out = []
    for root in roots:
        try:
            name = root.relative_to(base).as_posix() or "."
        except ValueError:  # outside the base cannot happen for paths below it; keep it whole
            name = root.as_posix()
        revision, branch, remote = _git_facts(root) if (root / ".git").exists() else (None, None, None)
        out.append(Repository(name, root.as_uri().rstrip("/") + "/", revision, branch, remote))
    return out


def repository_of(path: str, repositories: Sequence[Repository]) -> Repository | None:
    """The innermost repository holding ``path``."""
    holders = [r for r in repositories if r.holds(path)]
    return max(holders, key=lambda r: len(r.name)) if holders else None
