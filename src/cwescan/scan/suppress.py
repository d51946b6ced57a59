"""Inline suppressions, unused-suppression reports and count-aware baselines.

Inline: ``# cwescan: ignore[CWE-89]`` (one or more CWE ids, comma separated) or a bare
``# cwescan: ignore`` on any line of the flagged statement hides the finding; a CWE in the
list also covers its family (``ignore[CWE-78]`` hides CWE-77). Bandit's ``# nosec`` is honoured
too: bare it hides every finding on the statement, ``# nosec B602`` only findings whose rule id
(or Bandit test id) is listed. A ``cwescan: ignore`` that hid nothing is reported as unused;
``# nosec`` is not, since it may be there for Bandit's own checks.

Baseline: a JSON file of finding fingerprints. One baselined fingerprint hides exactly one
finding with that fingerprint, never every copy, so a new copy of a known bug still shows.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cwescan.core import cwe as cwe_catalog
from cwescan.core.astwalk import walk
from cwescan.core.findings import Finding

_CWESCAN_RE = re.compile(r"#\s*cwescan\s*:\s*ignore\b(?:\[([^\]]*)\])?", re.IGNORECASE)
_NOSEC_RE = re.compile(r"#\s*nosec\b:?\s*([A-Za-z0-9_, -]*)", re.IGNORECASE)


@dataclass
class Directive:
    line: int
    text: str  # the comment as written
    kind: str  # "cwescan" or "nosec"
    codes: tuple[str, ...]  # normalised CWE ids (cwescan) or test ids (nosec); empty: all
    used: set[str] = field(default_factory=set)  # codes that hid something ("*" for bare)

    def matches(self, finding: Finding) -> str | None:
        """The code of this directive that hides ``finding``, or None."""
        if not self.codes:
            return "*"
        if self.kind == "cwescan":
            for code in self.codes:
                if cwe_catalog.same_family(code, finding.cwe):
                    return code
            return None
        ids = {finding.rule_id.upper(), str(finding.extra.get("test_id", "")).upper()}
        return next((c for c in self.codes if c.upper() in ids), None)

    def unused_codes(self) -> list[str]:
        if not self.codes:
            return [] if self.used else ["*"]
        return [c for c in self.codes if c not in self.used]


def _comments(text: str) -> list[tuple[int, str]]:
    """(line, comment) pairs; tokenize keeps '#' inside strings out. Files that do not
    tokenize fall back to a per-line search."""
    try:
        return [(tok.start[0], tok.string)
                for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [(i, line[line.index("#"):]) for i, line in enumerate(text.split("\n"), 1)
                if "#" in line]


_MARKER_RE = re.compile(r"cwescan|nosec", re.IGNORECASE)


def parse_directives(text: str) -> list[Directive]:
    if not _MARKER_RE.search(text):  # most files: skip tokenizing
        return []
    out = []
    for line, comment in _comments(text):
        m = _CWESCAN_RE.search(comment)
        if m:
            codes = []
            for raw in (m.group(1) or "").split(","):
                if raw.strip():
                    try:
                        codes.append(cwe_catalog.normalize(raw))
                    except ValueError:
                        codes.append(raw.strip())  # reported as unused: it can never match
            out.append(Directive(line, m.group(0), "cwescan", tuple(codes)))
        m = _NOSEC_RE.search(comment)
        if m:
            codes = tuple(c for c in re.split(r"[,\s]+", m.group(1)) if re.fullmatch(r"[A-Za-z]+\d+", c))
            out.append(Directive(line, m.group(0).strip(), "nosec", codes))
    return out


def statement_lines(tree: ast.AST | None, n_lines: int) -> list[tuple[int, int]]:
    """For each 1-based line, the span of the innermost statement on it. A compound statement
    (def, if, with, ...) only counts its header, so a comment in a body does not reach the
    header. Index 0 is unused."""
    spans = [(i, i) for i in range(n_lines + 2)]
    if tree is None:
        return spans
    best = [n_lines + 2] * (n_lines + 2)  # size of the span currently assigned
    for node in walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        start = node.lineno
        end = node.end_lineno or start
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            end = max(start, body[0].lineno - 1)
            if body[0].lineno == start:  # "if x: y" on one line
                end = start
        for deco in getattr(node, "decorator_list", []):
            start = min(start, deco.lineno)
        size = end - start
        for line in range(max(1, start), min(end, n_lines) + 1):
            if size < best[line]:
                best[line] = size
                spans[line] = (start, end)
    return spans


@dataclass
class FileSuppressions:
    path: str
    directives: list[Directive]
    spans: list[tuple[int, int]]

    @classmethod
    def build(cls, path: str, text: str, tree: ast.AST | None) -> FileSuppressions:
        directives = parse_directives(text)
        # statement spans only matter where there is something to match against them
        spans = statement_lines(tree, text.count("\n") + 1) if directives else []
        return cls(path, directives, spans)

    def hide(self, finding: Finding) -> Directive | None:
        """The directive that hides ``finding`` (marking it used), or None."""
        if not self.directives:
            return None
        lines: set[int] = set()
        for line in range(finding.start_line, finding.end_line + 1):
            if 0 < line < len(self.spans):
                start, end = self.spans[line]
                lines.update(range(start, end + 1))
            else:
                lines.add(line)
        hit = None
        for d in self.directives:
            if d.line in lines:
                code = d.matches(finding)
                if code is not None:
                    d.used.add(code)
                    hit = hit or d
        return hit

    def unused(self) -> list[dict]:
        return [{"path": self.path, "line": d.line, "directive": d.text, "unused": codes}
                for d in self.directives if d.kind == "cwescan" and (codes := d.unused_codes())]


# --- fingerprints and baselines -----------------------------------------------------------

def _normalise(line: str) -> str:
    return " ".join(line.split())


def content_hash(lines: list[str], start: int, end: int) -> str:
    """Hash of the flagged lines with whitespace normalised: unchanged when code above moves."""
    snippet = "\n".join(_normalise(lines[i - 1]) for i in range(start, min(end, start + 20) + 1)
                        if 0 < i <= len(lines))
    return hashlib.sha256(snippet.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def fingerprint(finding: Finding, lines: list[str]) -> str:
    """Identity of a finding across edits: file, CWE family and flagged code, not line number.
    Identical copies in one file share a fingerprint; the baseline counts them."""
    h = content_hash(lines, finding.start_line, finding.end_line)
    key = f"{finding.path}\0{finding.family}\0{h}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]


BASELINE_VERSION = 1


def write_baseline(path: Path, findings: list[dict]) -> None:
    """``findings`` are JSON finding dicts (with "fingerprint")."""
    entries = [{"fingerprint": f["fingerprint"], "path": f["path"], "line": f["line_number"],
                "cwe": f["cwe"], "rule_id": f["rule_id"]} for f in findings]
    doc = {"cwescan_baseline": BASELINE_VERSION, "findings": entries}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class BaselineError(ValueError):
    pass


def load_baseline(path: Path) -> Counter:
    """fingerprint -> how many findings with it the baseline hides."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = doc["findings"]
        return Counter(str(e["fingerprint"]) for e in entries)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BaselineError(f"cannot read baseline {path}: {e}") from e


def apply_baseline(fingerprints: list[str], baseline: Counter) -> list[bool]:
    """For findings in report order, whether each is hidden: each baseline entry hides one."""
    left = Counter(baseline)
    hidden = []
    for fp in fingerprints:
        if left[fp] > 0:
            left[fp] -= 1
            hidden.append(True)
        else:
            hidden.append(False)
    return hidden
