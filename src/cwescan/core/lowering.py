"""Read Python 3.12-3.14 syntax with whatever Python runs the scan.

The static rules work on the host's ``ast`` trees, and an older host parser rejects newer
syntax: on Python 3.11, PEP 701 f-strings (the enclosing quote, backslashes or comments inside
a replacement field), PEP 695/696 ``type X = ...`` and type parameter lists, PEP 758
``except A, B:`` and PEP 750 template strings ``t"..."`` are syntax errors, and a file using
any of them got no rule analysis at all.

When the host's parser fails, tree-sitter's Python grammar (error tolerant and independent of
the host) locates those constructs, and the source is *lowered* to syntax the host accepts:

- ``type X[T] = V`` becomes ``X = V`` and type parameter lists of ``def``/``class`` are blanked
  (the rules do not read types);
- ``except A, B:`` gets its parentheses;
- a ``t"..."`` string becomes an ``f"..."`` string (one letter);
- an f-string the host cannot read is replaced by a placeholder name, and after parsing the
  placeholder is swapped for the :class:`ast.JoinedStr` built from the string's parts, each
  replacement field parsed on its own (recursively, so nesting works). Rules see an f-string.

Every rewrite keeps the number of lines and, except for the parentheses of an ``except`` list,
the length of every line, so every line number and column of the remaining code is the file's
own. The original text is what models read and what findings quote.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import dataclass

try:
    import tree_sitter_python
    from tree_sitter import Language, Parser
except ImportError:  # an install without the grammar: new syntax stays a syntax error
    tree_sitter_python = None

# Lowered construct -> how the report names it.
CONSTRUCTS = {
    "f-string": "f-strings with quotes, backslashes or comments in fields (PEP 701)",
    "type-alias": "type statements (PEP 695)",
    "type-params": "type parameter lists (PEP 695/696)",
    "except-list": "except lists without parentheses (PEP 758)",
    "t-string": "template strings (PEP 750)",
}

_STRING_PREFIX_WITH_T = re.compile(rb"(?<![\w])(?:[tT][rR]?|[rR][tT])['\"]")
_CONVERSIONS = {"r": ord("r"), "s": ord("s"), "a": ord("a")}


class _CannotLower(Exception):
    """Something here is not a construct this module lowers (or not valid Python at all)."""


@dataclass
class Lowered:
    tree: ast.Module
    constructs: list[str]  # keys of CONSTRUCTS, sorted

    def describe(self) -> str:
        return ", ".join(CONSTRUCTS[c] for c in self.constructs)


def available() -> bool:
    return tree_sitter_python is not None


_PARSER: list = []


def _ts_parser():
    if not _PARSER:
        _PARSER.append(Parser(Language(tree_sitter_python.language())))
    return _PARSER[0]


def parse_lowered(text: str, filename: str = "<unknown>") -> Lowered | None:
    """The tree of ``text`` after lowering newer syntax, or None when ``text`` holds none of
    the constructs above or still does not parse (a real syntax error). Never raises."""
    if tree_sitter_python is None:
        return None
    lowerer = _Lowerer(filename)
    try:
        tree = lowerer.parse(text.encode("utf-8", "surrogatepass"), "exec", native_first=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeError, _CannotLower):
        return None
    except Exception:  # noqa: BLE001 - a tree this module misreads keeps the host's verdict
        return None
    if not lowerer.constructs:
        return None
    return Lowered(tree, sorted(lowerer.constructs))


class _Lowerer:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.constructs: set[str] = set()

    # --- source level -------------------------------------------------------------------

    def parse(self, data: bytes, mode: str, native_first: bool = True):
        if native_first:
            try:
                return ast.parse(data.decode("utf-8", "surrogatepass"), self.filename, mode)
            except SyntaxError:
                pass
        root = _ts_parser().parse(data).root_node
        edits: list[tuple[int, int, bytes]] = []
        placeholders: dict[str, object] = {}  # name -> tree-sitter string node
        prefix = _free_prefix(data)
        stack = [root]
        while stack:
            node = stack.pop()
            kind = node.type
            if kind in ("string", "concatenated_string"):
                if self._lower_string(node, data, edits, placeholders, prefix):
                    continue
            elif kind == "type_alias_statement":
                self._lower_type_alias(node, data, edits)
                stack.extend(c for c in node.children if c.start_byte >= _after_eq(node))
                continue
            elif kind in ("function_definition", "class_definition"):
                for c in node.children:
                    if c.type == "type_parameter":
                        edits.append((c.start_byte, c.end_byte, _blank(data[c.start_byte:c.end_byte])))
                        self.constructs.add("type-params")
                stack.extend(c for c in node.children if c.type != "type_parameter")
                continue
            elif kind == "except_clause":
                self._lower_except_list(node, data, edits)
            stack.extend(node.children)
        if not edits:
            raise _CannotLower("nothing to lower")
        lowered = _apply(data, edits)
        tree = ast.parse(lowered.decode("utf-8", "surrogatepass"), self.filename, mode)
        if placeholders:
            self._substitute(tree, placeholders, data)
        return tree

    def _lower_string(self, node, data: bytes, edits, placeholders, prefix: bytes) -> bool:
        """Lower one string (or implicit concatenation); True when its subtree is handled."""
        parts = [c for c in node.children if c.type == "string"] if node.type == "concatenated_string" else [node]
        needs = [p for p in parts if _needs_rebuild(p, data)]
        if not needs:
            if node.type == "string":
                start = node.children[0]
                letters = data[start.start_byte:start.end_byte]
                if b"t" in letters.lower():
                    fixed = letters.replace(b"t", b"f").replace(b"T", b"F")
                    edits.append((start.start_byte, start.end_byte, fixed))
                    self.constructs.add("t-string")
            return False  # look inside: parts of a concatenation, fields with nested strings
        name = prefix + _base36(len(placeholders)).encode()
        edits.append((node.start_byte, node.end_byte, _placeholder(name, data[node.start_byte:node.end_byte])))
        placeholders[name.decode()] = node
        for p in parts:
            if b"t" in _letters(p, data).lower():
                self.constructs.add("t-string")
        if any(b"f" in _letters(p, data).lower() for p in needs):
            self.constructs.add("f-string")
        return True

    def _lower_type_alias(self, node, data: bytes, edits) -> None:
        # "type X[T] = V" -> "X        = V": the name moves to where "type" was
        name_node = next((c for c in node.children[1:] if c.type != "comment"), None)
        eq = _after_eq(node)
        if name_node is None or node.children[0].type != "type" or eq < 0:
            raise _CannotLower("type statement without a name")
        ident = name_node
        while ident.type != "identifier" and ident.children:
            ident = ident.children[0]
        if ident.type != "identifier":
            raise _CannotLower("type statement name")
        name = data[ident.start_byte:ident.end_byte]
        start, end = node.start_byte, eq - 1  # up to, not including, "="
        segment = _blank(data[start:end])
        if b"\n" in segment[:len(name)]:
            raise _CannotLower("type statement name split over lines")
        edits.append((start, end, name + segment[len(name):]))
        self.constructs.add("type-alias")

    def _lower_except_list(self, node, data: bytes, edits) -> None:
        kids = node.children
        if not any(c.type == "," for c in kids):
            return
        colon = next((i for i, c in enumerate(kids) if c.type == ":"), None)
        first = next((i for i, c in enumerate(kids) if c.type not in ("except", "*", "comment")), None)
        if colon is None or first is None or first >= colon:
            raise _CannotLower("except clause")
        items = [c for c in kids[first:colon] if c.type not in (",", "comment")]
        last = data[items[-1].start_byte:items[-1].end_byte].decode("utf-8", "surrogatepass")
        if len(items) == 2 and items[-1].type == "identifier" and last[:1].islower():
            # ``except ValueError, e:`` is Python 2 binding the exception to ``e``, not a PEP 758
            # list (whose items are classes): cwescan.core.recovery reads it as ``as e``
            raise _CannotLower("Python 2 except clause")
        lo, hi = kids[first].start_byte, kids[colon - 1].end_byte
        if data[lo - 1:lo] == b" " and kids[first - 1].type in ("except", "*") and kids[first - 1].end_byte < lo:
            edits.append((lo - 1, lo, b"("))
        else:
            edits.append((lo, lo, b"("))
        if data[hi:hi + 1] == b" ":
            edits.append((hi, hi + 1, b")"))
        else:
            edits.append((hi, hi, b")"))
        self.constructs.add("except-list")

    # --- tree level: placeholders become f-strings -------------------------------------------

    def _substitute(self, tree: ast.AST, placeholders: dict, data: bytes) -> None:
        found = 0
        for parent in list(ast.walk(tree)):
            for field_name, value in ast.iter_fields(parent):
                if isinstance(value, list):
                    for i, child in enumerate(value):
                        if isinstance(child, ast.Name) and child.id in placeholders:
                            value[i] = self._joined(placeholders[child.id], data)
                            found += 1
                elif isinstance(value, ast.Name) and value.id in placeholders:
                    setattr(parent, field_name, self._joined(placeholders[value.id], data))
                    found += 1
        if found != len(placeholders):
            raise _CannotLower("a placeholder went missing")

    def _joined(self, node, data: bytes) -> ast.JoinedStr:
        parts = [c for c in node.children if c.type == "string"] if node.type == "concatenated_string" else [node]
        values: list[ast.expr] = []
        for part in parts:
            letters = _letters(part, data).lower()
            if b"b" in letters:
                raise _CannotLower("bytes in an f-string concatenation")
            formatted, raw = b"f" in letters or b"t" in letters, b"r" in letters
            pos = part.children[0].end_byte
            for child in part.children[1:-1]:
                if child.type == "interpolation" and formatted:
                    values.append(ast.Constant(_literal(data[pos:child.start_byte], raw, formatted)))
                    values.extend(self._field(child, data))
                    pos = child.end_byte
            values.append(ast.Constant(_literal(data[pos:part.children[-1].start_byte], raw, formatted)))
        return _located(ast.JoinedStr(_merge(values)), node)

    def _field(self, node, data: bytes) -> list[ast.expr]:
        """``{expr=!r:spec}`` -> [debug text constant], FormattedValue."""
        kids = node.children
        if not kids or kids[0].type != "{" or kids[-1].type != "}":
            raise _CannotLower("replacement field")
        expr_start, expr_end, debug_end = kids[0].end_byte, None, None
        conversion, spec = -1, None
        for c in kids[1:]:
            if c.type == "=" and debug_end is None and expr_end is None:
                expr_end = c.start_byte
                debug_end = c.end_byte
            elif c.type == "type_conversion":
                expr_end = expr_end if expr_end is not None else c.start_byte
                debug_end = c.start_byte if debug_end is not None else None
                conversion = _CONVERSIONS.get(data[c.start_byte + 1:c.end_byte].decode(), -1)
            elif c.type == "format_specifier":
                expr_end = expr_end if expr_end is not None else c.start_byte
                if debug_end is not None and conversion == -1:
                    debug_end = c.start_byte
                spec = self._spec(c, data)
            elif c.type == "}":
                expr_end = expr_end if expr_end is not None else c.start_byte
                if debug_end is not None and conversion == -1 and spec is None:
                    debug_end = c.start_byte
        value = self._expression(data[expr_start:expr_end], node.children[0].end_point)
        out: list[ast.expr] = []
        if debug_end is not None:
            out.append(ast.Constant(_literal(data[expr_start:debug_end], True, False)))
            if conversion == -1 and spec is None:
                conversion = ord("r")
        out.append(_located(ast.FormattedValue(value, conversion, spec), node))
        return out

    def _spec(self, node, data: bytes) -> ast.JoinedStr:
        values: list[ast.expr] = []
        pos = node.children[0].end_byte if node.children and node.children[0].type == ":" else node.start_byte
        for c in node.children:
            if c.type in ("format_expression", "interpolation"):
                values.append(ast.Constant(_literal(data[pos:c.start_byte], False, True)))
                values.extend(self._field(c, data))
                pos = c.end_byte
        values.append(ast.Constant(_literal(data[pos:node.end_byte], False, True)))
        return _located(ast.JoinedStr(_merge(values)), node)

    def _expression(self, source: bytes, at) -> ast.expr:
        """Parse a replacement field's expression where it stands in the file (0-based row and
        byte column ``at``), lowering what it nests."""
        if not source.strip():
            raise _CannotLower("empty replacement field")
        body = self.parse(b"(" + source + b"\n)", "eval").body
        row, col = at
        for n in ast.walk(body):
            if getattr(n, "lineno", None) is not None:  # nodes with a position (not ops, contexts)
                if n.lineno == 1:
                    n.col_offset += col - 1
                if getattr(n, "end_lineno", None) == 1:
                    n.end_col_offset += col - 1
                n.lineno += row
                if getattr(n, "end_lineno", None) is not None:
                    n.end_lineno += row
        return body


# --- helpers ------------------------------------------------------------------------------


def _letters(string_node, data: bytes) -> bytes:
    start = string_node.children[0]
    return data[start.start_byte:start.end_byte].rstrip(b"'\"")


def _needs_rebuild(string_node, data: bytes) -> bool:
    """Whether the host's parser (3.8-3.11 rules) could refuse this f-string or t-string: a
    field holding the enclosing quote, a backslash, a comment, a line break in a one-line
    string, or a nested t-string. An over-estimate is harmless: a rebuilt f-string is the
    same tree."""
    kids = string_node.children
    if not kids or kids[0].type != "string_start":
        return False
    letters = _letters(string_node, data).lower()
    if b"f" not in letters and b"t" not in letters:
        return False
    start = data[kids[0].start_byte:kids[0].end_byte]
    quote = start[len(letters):]
    for c in kids[1:-1]:
        if c.type != "interpolation":
            continue
        field = data[c.start_byte:c.end_byte]
        if (quote in field or b"\\" in field or b"#" in field
                or (len(quote) == 1 and b"\n" in field) or _STRING_PREFIX_WITH_T.search(field)):
            return True
    return False


def _after_eq(node) -> int:
    """Byte just after the "=" of a type statement (-1 when it has none)."""
    eq = next((c for c in node.children if c.type == "="), None)
    return eq.end_byte if eq is not None else -1


def _blank(segment: bytes) -> bytes:
    """Spaces of the same length, keeping line breaks, each preceded by a backslash so the
    statement continues past it."""
    out = bytearray(b" " * len(segment))
    for i, ch in enumerate(segment):
        if ch == 0x0A:
            out[i] = 0x0A
            if i > 0:
                out[i - 1] = 0x5C
    return bytes(out)


def _placeholder(name: bytes, segment: bytes) -> bytes:
    """``(name)`` laid over ``segment``: same line breaks, same length of every line."""
    lines = segment.split(b"\n")
    if len(lines) == 1:
        if len(name) + 2 > len(segment):
            raise _CannotLower("string too short for its placeholder")
        # the closing parenthesis where the string ended: the statement keeps its end column
        return b"(" + name + b" " * (len(segment) - len(name) - 2) + b")"
    out = [b" " * len(line) for line in lines]
    slot = next((i for i, line in enumerate(lines) if len(line) >= len(name) + 2), None)
    if slot is None or not lines[0] or not lines[-1]:
        raise _CannotLower("no room for the placeholder")
    out[0] = b"(" + out[0][1:]
    out[-1] = out[-1][:-1] + b")"
    row = bytearray(out[slot])
    at = 1 if slot == 0 else 0
    row[at:at + len(name)] = name
    out[slot] = bytes(row)
    return b"\n".join(out)


def _apply(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    edits.sort(key=lambda e: (e[0], e[1]))
    out, pos = [], 0
    for start, end, new in edits:
        if start < pos:
            raise _CannotLower("overlapping rewrites")
        out += [data[pos:start], new]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _free_prefix(data: bytes) -> bytes:
    """A name prefix that no identifier of the file starts with."""
    for letter in b"qjkzxwvy":
        prefix = b"_" + bytes([letter])
        if not re.search(rb"(?<![\w])" + prefix + rb"[0-9a-z]", data):
            return prefix
    raise _CannotLower("no free placeholder name")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


_ESCAPE = re.compile(r"\\(N\{[^}]*\}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|[0-7]{1,3}|\n|.)", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
           "f": "\f", "v": "\v", "\n": ""}


def _unescape(text: str) -> str:
    def one(m: re.Match) -> str:
        e = m.group(1)
        if e in _SIMPLE:
            return _SIMPLE[e]
        if e[0] == "N":
            try:
                return unicodedata.lookup(e[2:-1])
            except KeyError:
                return m.group(0)
        if e[0] in "uUx":
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8))
        return m.group(0)  # unknown escapes stay as written, as Python keeps them

    return _ESCAPE.sub(one, text)


def _literal(raw_bytes: bytes, raw: bool, formatted: bool) -> str:
    text = raw_bytes.decode("utf-8", "surrogatepass")
    if formatted:
        text = text.replace("{{", "{").replace("}}", "}")
    return text if raw else _unescape(text)


def _merge(values: list[ast.expr]) -> list[ast.expr]:
    """Adjacent constants joined and empty ones dropped, as CPython builds a JoinedStr."""
    out: list[ast.expr] = []
    for v in values:
        if isinstance(v, ast.Constant):
            if not v.value:
                continue
            if out and isinstance(out[-1], ast.Constant):
                out[-1] = ast.Constant(out[-1].value + v.value)
                continue
        out.append(v)
    return out


def _located(node: ast.expr, ts_node) -> ast.expr:
    """Give ``node`` (and the constants inside it, as CPython does) the span of ``ts_node``."""
    (r0, c0), (r1, c1) = ts_node.start_point, ts_node.end_point
    for n in [node, *(v for v in getattr(node, "values", []) if isinstance(v, ast.Constant))]:
        n.lineno, n.col_offset, n.end_lineno, n.end_col_offset = r0 + 1, c0, r1 + 1, c1
    return node
