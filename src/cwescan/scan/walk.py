"""Find the Python files to scan and read them safely.

Discovery honours ``.gitignore`` files, ``exclude`` globs and a list of folders nobody wants
scanned (virtualenvs, caches, build output). It never follows a symlink (one out of the tree
would leave it, one inside points at files found anyway), so it never loops. A path named on the command line is always scanned: excludes only prune what
is found beneath it.

Reading never raises: a file that cannot be scanned comes back as a :class:`Notice` with a
short stable ``reason`` code and a human ``message``.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import stat
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from cwescan.core.config import DEFAULT_MAX_FILE_SIZE

# Folder names skipped while walking (fnmatch patterns on the folder's own name).
DEFAULT_SKIP_DIRS = (
    ".venv", "venv", "env", "site-packages", "__pycache__", "build", "dist", ".git", ".hg",
    ".svn", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules",
    "*.egg-info",
)

# reason code -> True when the file is still (partly) scanned
REASONS = {
    "empty": True,  # scanned, nothing in it
    "lowered": True,  # fully scanned: syntax newer than this Python was rewritten first
    "repaired": True,  # fully scanned: Python 2 forms or indentation rewritten line for line
    "syntax-error": True,  # no AST: static rules skip it, models still read the text
    "too-deep": True,  # nesting too deep for the parser; models still read the text
    "timeout": True,  # a detector ran past --file-timeout on it
    "parse-timeout": False,  # the parser itself ran past --file-timeout (stopped in a child)
    "detector-error": True,  # a detector failed on this file; others still ran
    "model-budget": True,  # models read only part of a very large file; static rules all of it
    "binary": False,
    "nul-byte": False,
    "undecodable": False,
    "too-large": False,
    "unreadable": False,
    "not-a-file": False,
    "broken-symlink": False,
    "symlink-outside-root": False,
    "worker-lost": False,  # the process scanning it died on every try (cluster scans)
}

COMPLETE_REASONS = ("empty", "lowered", "repaired")


@dataclass(frozen=True)
class Notice:
    """Why a file was skipped or only partly scanned."""

    path: str  # posix, relative to the report base
    reason: str  # one of REASONS
    message: str

    @property
    def scanned(self) -> bool:
        return REASONS[self.reason]

    @property
    def complete(self) -> bool:
        """Scanned in full: the notice only tells something about how."""
        return self.reason in COMPLETE_REASONS

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "scanned": self.scanned,
                "message": self.message}


@dataclass(frozen=True)
class Candidate:
    """A file found by discovery."""

    abspath: Path  # the path as found (may be a symlink inside the root)
    relpath: str  # posix, relative to the report base


def find_base(paths: Iterable[Path]) -> Path:
    """The project root: the folder report paths, fingerprints, baselines and exclude patterns
    are relative to. It is the enclosing git work tree when all paths share one (SARIF wants
    repository-relative uris), else the nearest folder at or above them holding a
    pyproject.toml, else the paths' common folder. It never depends on the current folder, so a
    baseline written from one folder matches a scan started from another."""
    dirs = [p.resolve() if p.resolve().is_dir() else p.resolve().parent for p in paths]
    if not dirs:
        return Path.cwd().resolve()
    common = Path(os.path.commonpath([str(d) for d in dirs]))
    for parent in (common, *common.parents):
        if (parent / ".git").exists():
            return parent
    for parent in (common, *common.parents):
        if (parent / "pyproject.toml").is_file():
            return parent
    return common


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:  # outside the base (only when named explicitly elsewhere)
        return path.as_posix()


def has_python_shebang(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


class _Ignore:
    """The .gitignore files in effect for one folder, each matching paths relative to its own
    folder, plus exclude globs matching paths relative to the base."""

    def __init__(self, base: Path, patterns: list[str], matched: set[str] | None = None):
        self.base = base
        self.patterns = patterns
        self.excludes = pathspec.GitIgnoreSpec.from_lines(patterns) if patterns else None
        self.matched = matched if matched is not None else set()  # patterns that left something out
        self._gitignores: dict[Path, pathspec.PathSpec | None] = {}

    def _note_match(self, rel: str) -> None:
        # only on a match, which is rare next to the paths walked: which pattern(s) did it
        for p in self.patterns:
            if p not in self.matched and pathspec.GitIgnoreSpec.from_lines([p]).match_file(rel):
                self.matched.add(p)

    def gitignore(self, folder: Path) -> pathspec.PathSpec | None:
        if folder not in self._gitignores:
            spec = None
            try:
                lines = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
                spec = pathspec.GitIgnoreSpec.from_lines(lines.splitlines())
            except OSError:
                pass
            self._gitignores[folder] = spec
        return self._gitignores[folder]

    def ignored(self, path: Path, is_dir: bool, gitignore_dirs: list[Path]) -> bool:
        suffix = "/" if is_dir else ""
        if self.excludes is not None and self.excludes.match_file(_rel(path, self.base) + suffix):
            self._note_match(_rel(path, self.base) + suffix)
            return True
        # deeper .gitignore files come last; a later negation ("!x.py") can re-include
        verdict = False
        for folder in gitignore_dirs:
            spec = self.gitignore(folder)
            if spec is None:
                continue
            rel = _rel(path, folder) + suffix
            result = spec.check_file(rel)
            if result.include is not None:
                verdict = result.include
        return verdict


def _gitignore_ancestors(folder: Path, base: Path, floor: Path | None = None) -> list[Path]:
    """Folders from the base (or the git root above it, or ``floor``) down to ``folder``
    whose .gitignore applies to files in ``folder``."""
    chain = [folder, *folder.parents]
    out = []
    for d in chain:
        out.append(d)
        if (d / ".git").exists() or d == base or d == floor:
            break
    return list(reversed(out))


def discover(
    paths: Iterable[Path],
    base: Path,
    exclude: Iterable[str] = (),
    skip_dirs: Iterable[str] = DEFAULT_SKIP_DIRS,
    use_gitignore: bool = True,
    force_exclude: bool = False,
    matched_excludes: set[str] | None = None,
) -> tuple[list[Candidate], list[Notice]]:
    """Python files under ``paths`` (sorted, unique) and notices about what was left out on the
    way (symlinks pointing out of the tree, broken symlinks). With ``force_exclude``, excludes
    and .gitignore apply to the named paths too (for pre-commit, which names every file).
    Exclude patterns match paths relative to ``base`` (the project root); those that left
    something out (or cover a named path) are added to ``matched_excludes``."""
    matched = matched_excludes if matched_excludes is not None else set()
    base = base.resolve()
    skip_dirs = tuple(skip_dirs)
    patterns = [p for p in exclude if p.strip()]
    files: dict[str, Candidate] = {}
    notices: dict[str, Notice] = {}

    for given in paths:
        given = Path(given)
        if not given.exists() and not given.is_symlink():
            raise FileNotFoundError(f"no such file or folder: {given}")
        root = given.resolve()
        if force_exclude:
            everything = _Ignore(base, patterns, matched)
            gi_dirs = _gitignore_ancestors(root.parent, base) if use_gitignore else []
            if root != base and everything.ignored(root, root.is_dir(), gi_dirs):
                continue
        # Excludes that cover the named path itself do not apply below it: naming a path
        # asks for it to be scanned.
        named = _rel(root, base) + ("/" if root.is_dir() else "")
        covering = set() if force_exclude else {p for p in patterns
                                                if pathspec.GitIgnoreSpec.from_lines([p]).match_file(named)}
        matched.update(covering)
        ignore = _Ignore(base, [p for p in patterns if p not in covering], matched)
        if not root.is_dir():
            rel = _rel(root, base)
            if given.is_symlink() and not given.exists():
                notices[rel] = Notice(rel, "broken-symlink", f"broken symlink: {given}")
            else:
                files[rel] = Candidate(root, rel)
            continue
        # A named folder that is itself git-ignored (say, a Python install inside a dotfiles
        # repository) is scanned: only .gitignore files inside it apply.
        floor = None
        if use_gitignore and not force_exclude and root != base and ignore.ignored(
                root, True, _gitignore_ancestors(root.parent, base)):
            floor = root
        for cand, notice in _walk_dir(root, base, ignore, skip_dirs, use_gitignore, floor):
            if cand is not None:
                files.setdefault(cand.relpath, cand)
            if notice is not None:
                notices.setdefault(notice.path, notice)
    return ([files[k] for k in sorted(files)],
            [notices[k] for k in sorted(notices) if k not in files])


def _walk_dir(root: Path, base: Path, ignore: _Ignore, skip_dirs: tuple[str, ...],
              use_gitignore: bool, floor: Path | None) -> Iterator[tuple[Candidate | None, Notice | None]]:
    seen_dirs: set[tuple[int, int]] = set()  # (st_dev, st_ino) of real folders: no loops
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        gi_dirs = _gitignore_ancestors(folder, base, floor) if use_gitignore else []
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            rel = _rel(folder, base)
            yield None, Notice(rel, "unreadable", f"cannot list folder: {e.strerror or e}")
            continue
        subdirs = []
        for entry in entries:
            path = Path(entry.path)
            rel = _rel(path, base)
            if entry.is_symlink():
                # Links are never followed: one inside the tree points at files found anyway
                # (and could loop), one outside would leave the tree.
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):  # broken or looping link
                    if entry.name.endswith(".py"):
                        yield None, Notice(rel, "broken-symlink", "broken or looping symlink")
                    continue
                points_to_dir = target.is_dir()
                if points_to_dir and any(fnmatch.fnmatch(entry.name, pat) for pat in skip_dirs):
                    continue
                if ignore.ignored(path, points_to_dir, gi_dirs):
                    continue
                if not _is_within(target, root) and (entry.name.endswith(".py") or points_to_dir):
                    yield None, Notice(rel, "symlink-outside-root",
                                       f"symlink points outside the scanned tree: {target}")
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if any(fnmatch.fnmatch(entry.name, pat) for pat in skip_dirs):
                    continue
                if ignore.ignored(path, True, gi_dirs):
                    continue
                subdirs.append(path)
                continue
            if not (entry.name.endswith(".py") or entry.name.endswith(".pyw")
                    or ("." not in entry.name and _is_script(path))):
                continue
            if ignore.ignored(path, False, gi_dirs):
                continue
            yield Candidate(path, rel), None
        stack.extend(reversed(subdirs))


def _is_script(path: Path) -> bool:
    """An extensionless regular, executable-looking file with a python shebang."""
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0 and has_python_shebang(path)


@dataclass
class ReadResult:
    text: str | None  # None when the file is skipped
    notice: Notice | None  # why skipped, or a note about a scanned file (empty)
    size: int = 0


def read_source(path: Path, relpath: str, max_size: int = DEFAULT_MAX_FILE_SIZE) -> ReadResult:
    """Read a Python file as text, honouring a BOM or PEP 263 coding line. Never raises."""
    data = read_bytes(path, relpath, max_size)
    return data if isinstance(data, ReadResult) else decode_source(data, relpath, max_size)


def read_bytes(path: Path, relpath: str, max_size: int = DEFAULT_MAX_FILE_SIZE) -> bytes | ReadResult:
    """The raw bytes of a file, or the ReadResult that skips it (missing, not a regular file,
    too large, unreadable). Split from decoding so that a file read on one machine can be
    decoded and scanned on another. Never raises."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        reason = "broken-symlink" if os.path.islink(path) else "unreadable"
        return ReadResult(None, Notice(relpath, reason, "file vanished or broken symlink"))
    except OSError as e:
        return ReadResult(None, Notice(relpath, "unreadable", f"cannot stat: {e.strerror or e}"))
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        return ReadResult(None, Notice(relpath, "not-a-file", f"{kind}, not a source file"))
    if st.st_size > max_size:
        return ReadResult(None, Notice(
            relpath, "too-large",
            f"{st.st_size / 1e6:.1f} MB is over the {max_size / 1e6:.1f} MB limit (max-file-size)"),
            st.st_size)
    try:
        with open(path, "rb") as f:
            data = f.read(max_size + 1)
    except OSError as e:
        return ReadResult(None, Notice(relpath, "unreadable", f"cannot read: {e.strerror or e}"))
    return data


def decode_source(data: bytes, relpath: str, max_size: int = DEFAULT_MAX_FILE_SIZE) -> ReadResult:
    """The text of a file's bytes as :func:`read_source` gives it, or why it is skipped."""
    size = len(data)
    if size > max_size:  # grew since stat
        return ReadResult(None, Notice(relpath, "too-large", "over the size limit"), size)
    if not data.strip():
        return ReadResult("", Notice(relpath, "empty", "empty file: nothing to scan"), size)
    has_nul = b"\0" in data
    if has_nul and _looks_binary(data):
        return ReadResult(None, Notice(relpath, "binary", "binary content, not Python source"), size)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        head = b"\n".join(data.removeprefix(b"\xef\xbb\xbf").split(b"\n", 2)[:2])
        if _CODING_RE.search(head):
            message = f"bad encoding declaration: {e}"  # unknown codec, or BOM/cookie conflict
        else:
            message = "not valid UTF-8 and no PEP 263 coding line"
        return ReadResult(None, Notice(relpath, "undecodable", message), size)
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        if has_nul:  # NUL bytes and not text: some binary format
            return ReadResult(None, Notice(relpath, "binary", "binary content, not Python source"), size)
        return ReadResult(None, Notice(
            relpath, "undecodable",
            f"not valid {encoding}: {e.reason} at byte {e.start}"
            if isinstance(e, UnicodeDecodeError) else f"unknown encoding {encoding}"), size)
    if has_nul:
        first_nul = data.index(b"\0")
        return ReadResult(None, Notice(
            relpath, "nul-byte", f"source holds NUL bytes (first at byte {first_nul}); "
            "Python itself refuses such a file"), size)
    if text.startswith("\ufeff"):
        text = text[1:]
    # Universal newlines, as Python reads source: line numbers then match the AST's.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return ReadResult(text, None, size)


_CODING_RE = re.compile(rb"^[ \t\f]*#.*?coding[:=]", re.MULTILINE)


def _looks_binary(data: bytes) -> bool:
    """Many control bytes (besides NUL) in the head mean binary; a stray NUL in text does not."""
    head = data[:8192]
    text_bytes = set(range(32, 127)) | {0, 9, 10, 12, 13} | set(range(128, 256))
    control = sum(1 for b in head if b not in text_bytes)
    return control / max(1, len(head)) > 0.05
