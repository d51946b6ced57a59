"""Code normalisation for duplicate detection: comments, blank lines and all whitespace are
ignored, so two snippets that differ only in layout or comments normalise to the same string."""

from __future__ import annotations

import hashlib
import io
import re
import tokenize

# tokens that carry layout, not code
_LAYOUT = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}
# fallback for code that does not tokenize (Python 2, fragments): a '#' comment outside a
# string literal, and a rough token splitter
_STRING_OR_COMMENT = re.compile(
    r"""(?P<str>'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|(?P<comment>\#[^\n]*)"""
)
_ROUGH_TOKEN = re.compile(r"""'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|\w+|\S""")


def code_tokens(code: str) -> list[str]:
    """The code's tokens without comments and layout. Uses Python's tokenizer; code it cannot
    read falls back to a regex that drops '#' comments outside string literals."""
    try:
        return [
            tok.string
            for tok in tokenize.generate_tokens(io.StringIO(code).readline)
            if tok.type not in _LAYOUT and tok.string.strip()
        ]
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        stripped = _STRING_OR_COMMENT.sub(lambda m: m.group("str") or "", code)
        return _ROUGH_TOKEN.findall(stripped)


def join_tokens(tokens: list[str]) -> str:
    """The normalised form of a token list: concatenated with every whitespace character removed."""
    return re.sub(r"\s+", "", "".join(tokens))


def normalize_code(code: str) -> str:
    """Comments, blank lines and every whitespace character removed."""
    return join_tokens(code_tokens(code))


def normalized_hash(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode("utf-8")).hexdigest()


def shingles(tokens: list[str], k: int = 5) -> set[str]:
    """Overlapping k-token windows, the unit of near-duplicate (Jaccard) similarity."""
    if len(tokens) <= k:
        return {"\x1f".join(tokens)} if tokens else set()
    return {"\x1f".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}
