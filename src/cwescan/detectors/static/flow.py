"""What a value may hold, as the data flow (``taint.py``) answers it: a :class:`Flow` (tainted,
unknown or constant, with its source kind and how it was built), the source kinds and the
confidence each gives a finding, and the sanitisers that make a tainted value safe for some
kinds of sink.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace

TAINTED, UNKNOWN, CONSTANT = 2, 1, 0
LEVEL_NAMES = {TAINTED: "tainted", UNKNOWN: "unknown", CONSTANT: "constant"}

# Source kinds and the confidence that a sink reached by them is exploitable.
SOURCE_CONFIDENCE = {
    "request": 0.9,  # an HTTP request field
    "route-param": 0.85,  # a parameter of a routed view function (a URL segment)
    "input": 0.85,  # input()
    "argv": 0.85,  # sys.argv, argparse (not for path, URL and pattern sinks: ARGV_SAFE_FOR)
    "upload": 0.9,  # a file uploaded by the client
    "upload-name": 0.9,  # the filename the client gave its upload
    "network": 0.8,  # bytes a socket received: whoever connected chose them
    "environment": 0.65,  # os.environ: set by whoever runs the program
    # A plain function parameter holds what its caller passes: untrusted only if some caller
    # passes outside data, which this intraprocedural flow cannot see. Below the environment,
    # and reported one severity lower (WEAK_SOURCES).
    "parameter": 0.55,
}
# Source kinds that are not evidence of attacker control on their own: a finding resting on
# one is reported one severity lower.
WEAK_SOURCES = frozenset({"parameter"})
# Source kinds a remote client controls (not whoever runs the program: the command line,
# input(), the environment).
REMOTE_SOURCES = frozenset({"request", "route-param", "upload", "upload-name", "network"})
# Source kinds set by whoever runs the program. The labelled data counts their flows into a
# sink as weaknesses (and so do we: same confidence), but the person who can set them can
# usually run code already, so a finding resting on one alone is reported one severity lower
# than one a remote client can reach (CodeQL keeps such "local" sources out of its default
# queries; Flask's shell evaluating the file $PYTHONSTARTUP names is the typical case).
LOCAL_SOURCES = frozenset({"environment", "argv", "input"})
# CGI hands the request to the program in its environment (RFC 3875 meta-variables; a WSGI
# `environ` holds the same keys): these variables are request data, not configuration. Only
# names no program uses for its own settings: HTTP_HOST or HTTP_PORT, say, often are.
CGI_REQUEST_VARIABLES = frozenset({
    "QUERY_STRING", "PATH_INFO", "PATH_TRANSLATED", "REQUEST_URI", "CONTENT_TYPE", "REMOTE_USER",
    "HTTP_COOKIE", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION", "HTTP_X_FORWARDED_FOR"})
UNKNOWN_CONFIDENCE = 0.5
DATABASE = "database"  # the source label of unknown values read back from a database
# unknown values whose origin is known and worth naming in an explanation
NAMED_UNKNOWN = frozenset({DATABASE, "test-data"})


# name (last component) -> kinds of sink it makes safe; "*" = every kind
SANITIZERS: dict[str, frozenset[str]] = {
    "int": frozenset("*"), "float": frozenset("*"), "bool": frozenset("*"),
    "len": frozenset("*"), "UUID": frozenset("*"), "hexdigest": frozenset("*"),
    "urlencode": frozenset("*"),
    "quote": frozenset({"command", "url-path"}),  # shlex.quote / pipes.quote
    "escape": frozenset({"html"}), "escape_html": frozenset({"html"}),
    "clean": frozenset({"html"}), "sanitize": frozenset({"html"}),
    "secure_filename": frozenset({"path", "upload"}),
    "basename": frozenset({"path", "upload"}),
    "get_valid_filename": frozenset({"path", "upload"}),
    "url_for": frozenset({"redirect", "url"}), "reverse": frozenset({"redirect", "url"}),
    "literal_eval": frozenset({"code"}),
    "escape_string": frozenset({"sql"}), "mogrify": frozenset(), "escape_filter_chars": frozenset({"ldap"}),
    "escape_dn_chars": frozenset({"ldap"}), "filter_format": frozenset({"ldap"}),
    # in-memory files: their content may be tainted, but they are not paths, URLs or commands
    "BytesIO": frozenset({"path", "upload", "url", "command", "sql", "redirect"}),
    "StringIO": frozenset({"path", "upload", "url", "command", "sql", "redirect"}),
}
_HTML_ESCAPER = re.compile(r"(?i)^(?!.*unescape)(.*html.*(escape|sanit|clean|encode)"
                           r"|.*(escape|sanit|clean|encode).*html|conditional_escape$|htmlspecialchars$)")


def sanitizer_kinds(name: str) -> frozenset[str] | None:
    """The sink kinds a call named ``name`` makes its result safe for (None: no sanitiser).
    Besides SANITIZERS, any function whose name says it escapes for HTML (``escape_for_html``,
    ``html_escape``, ``sanitize_html``): projects write their own."""
    kinds = SANITIZERS.get(name)
    if kinds is None and _HTML_ESCAPER.search(name):
        return frozenset({"html"})
    return kinds


PURE = {"str", "bytes", "repr", "format", "strip", "lstrip", "rstrip", "lower", "upper", "encode",
        "decode", "replace", "join", "dedent", "tuple", "list", "sorted", "chr", "ord", "hex", "abs",
        "min", "max", "round", "title", "capitalize", "zfill", "ljust", "rjust", "center",
        "dumps"}


@dataclass(frozen=True)
class Flow:
    """What an expression may hold."""

    level: int
    source: str = ""  # source kind, a key of SOURCE_CONFIDENCE
    origin: str = ""  # the source, kind first: "request data (request.args)", "parameter `term` (...)"
    how: str = ""  # "an f-string", "concatenation", ...
    var: str = ""  # the last variable the value went through
    line: int = 0  # where that variable was assigned
    safe_for: frozenset[str] = frozenset()  # sink kinds a sanitiser on the way made it safe for
    chain: frozenset[str] = frozenset()  # variables the value went through
    built: bool = False  # made by string building (f-string, +, %, format, join)
    # went through abspath/realpath/normpath/resolve() since it was last built
    normalised: bool = False
    # the tainted parts of a value joined from parts sanitised differently (``escape(q) + row``),
    # the strongest of each source and sanitising; empty when every part is sanitised alike
    parts: tuple[Flow, ...] = ()
    # the calls that handed the value to the function it is in, from the source on: (file,
    # line), the file "" for the file at hand (a report's related locations)
    entered: tuple[tuple[str, int], ...] = ()

    def level_for(self, kind: str | None) -> int:
        if kind and self.level == TAINTED and ("*" in self.safe_for or kind in self.safe_for):
            return CONSTANT
        return self.level

    def made_safe_for(self, kinds: frozenset[str]) -> Flow:
        """The value after a sanitiser or a check for ``kinds``: each of its parts is too."""
        return replace(self, safe_for=self.safe_for | kinds,
                       parts=tuple(replace(p, safe_for=p.safe_for | kinds) for p in self.parts))

    def for_kind(self, kind: str) -> Flow:
        """The value as a sink of ``kind`` sees it: constant when sanitised for it; else, of a
        value joined from differently sanitised parts, the strongest part not sanitised for
        ``kind`` names the source (``escape(request.args["q"]) + row`` is, for HTML, only as
        strong as ``row``)."""
        if self.level_for(kind) == CONSTANT:
            return CONST
        open_parts = [p for p in self.parts if p.level_for(kind) == TAINTED]
        if not open_parts:
            return self
        best = max(open_parts, key=lambda p: p.confidence)
        return replace(self, source=best.source, origin=best.origin, parts=())

    @property
    def confidence(self) -> float:
        if self.level == TAINTED:
            return SOURCE_CONFIDENCE.get(self.source, 0.7)
        return UNKNOWN_CONFIDENCE if self.level == UNKNOWN else 0.0

    @property
    def weak(self) -> bool:
        """Not evidence of attacker control on its own: untraced, or only a plain parameter."""
        return self.level != TAINTED or self.source in WEAK_SOURCES

    @property
    def local(self) -> bool:
        """Set by whoever runs the program (the environment, the command line, input()), not by
        a remote client: reported one severity lower (``LOCAL_SOURCES``)."""
        return self.level == TAINTED and self.source in LOCAL_SOURCES

    @property
    def caller_chosen(self) -> bool:
        """A plain parameter handed on as it came, not built into a larger value: a sink that
        takes a whole path, URL, target or query from it does what its caller asked (a helper),
        which is the caller's weakness if any, not this function's."""
        return self.source == "parameter" and not self.built

    def explain(self, sink: str) -> str:
        """E.g. "parameter `term` (caller-supplied, not known to be user input) reaches
        conn.execute() through concatenation via `query` (line 14)": the origin names the
        source kind."""
        if self.level == TAINTED:
            text = f"{self.origin} reaches {sink}"
        elif self.level == UNKNOWN and self.origin:
            text = f"{self.origin} reaches {sink}"
        elif self.level == UNKNOWN:
            text = f"a value not traced to a constant reaches {sink}"
        else:
            text = f"a constant reaches {sink}"
        if self.how:
            text += f" through {self.how}"
        if self.var:
            text += f" via `{self.var}` (line {self.line})"
        return text


CONST = Flow(CONSTANT)
UNKNOWN_FLOW = Flow(UNKNOWN)


def join(flows, how: str = "") -> Flow:
    """The strongest of several flows (taint wins); ``how`` names the building operation."""
    best: Flow | None = None
    safe: frozenset[str] | None = None
    chain: frozenset[str] = frozenset()
    built, normalised = False, True
    tainted: dict[tuple[str, frozenset[str]], Flow] = {}  # strongest part per source and sanitising
    for f in flows:
        for part in f.parts or ((f,) if f.level == TAINTED else ()):
            tainted.setdefault((part.source, part.safe_for), part)  # parts hold no parts
        chain |= f.chain
        built = built or f.built
        if best is None or f.level > best.level or (
                f.level == best.level == TAINTED and f.confidence > best.confidence):
            best = f  # taint wins; among tainted values the strongest source kind
        if f.level == TAINTED:
            safe = f.safe_for if safe is None else safe & f.safe_for
            normalised = normalised and f.normalised  # like safe_for: every tainted part
    if best is None:
        return CONST
    if best.level == CONSTANT:
        return CONST
    parts = tuple(tainted.values()) if len({s for _, s in tainted}) > 1 else ()
    return replace(best, how=how or best.how, chain=chain, built=built or bool(how),
                   safe_for=safe if safe is not None else best.safe_for, parts=parts,
                   normalised=normalised and safe is not None and not how)  # building undoes it


# A command-line tool opens the files, fetches the URLs and matches the patterns its user names:
# that is its job, not a weakness (argparse made every CLI's `open(args.input)` a path-traversal
# finding: 29 in this machine's site-packages). The command line still counts for commands, code,
# SQL and deserialisation, where another program passing data through it is the risk.
ARGV_SAFE_FOR = frozenset({"path", "upload", "url", "regex", "redirect"})


def argv_flow(origin: str) -> Flow:
    return Flow(TAINTED, "argv", origin, safe_for=ARGV_SAFE_FOR)


def request_flow(field_name: str) -> Flow:
    if field_name in ("request.files", "request.FILES"):
        return Flow(TAINTED, "upload", f"an uploaded file ({field_name})")
    return Flow(TAINTED, "request", f"request data ({field_name})")


def environment_flow(key: ast.AST | None) -> Flow:
    name = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else ""
    if name in CGI_REQUEST_VARIABLES:
        return Flow(TAINTED, "request", f"request data (the CGI variable `{name}`)")
    return Flow(TAINTED, "environment", f"environment variable `{name}`" if name else "environment variable")
