"""Resource consumption (CWE-400): regular expressions and reads sized by untrusted data.

Our own rules: Bandit has no check for either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.context import Context, arg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.sources import request_field
from cwescan.detectors.static.flow import TAINTED

_RE_FUNCS = {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


# A plain parameter reaching a pattern: on the labelled split as common in fixed code as in
# vulnerable code, and in library code the caller's pattern; kept under the default display
# confidence (the model's review can raise it)
PARAMETER_PATTERN = 0.25


@rule("CWS400", cwe="CWE-400", title="Regular expression from untrusted data", severity="medium",
      calls=_RE_FUNCS)
def regex_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A regular expression pattern taken from untrusted data.

    **What.** ``re.compile/match/search/fullmatch/sub/split/findall/finditer`` (and ``regex``)
    whose pattern a request field, a parameter, ``input()`` or the environment reaches, not
    passed through ``re.escape``.

    **Confidence.** The source's; a plain function parameter 0.25, one severity lower and under
    the default display confidence: a library compiling its caller's pattern is doing its job,
    and on the labelled split such findings are as common in fixed code as in vulnerable code.

    **Why.** A pattern like ``(a+)+$`` backtracks exponentially: one request pins a CPU
    (ReDoS, CWE-400/1333); the user can also change what the pattern matches.

    **Example.**

        if re.search(request.args["q"], title): ...

    **Fix.** ``re.escape(user_text)`` to match it literally; or use a linear-time engine
    (``google-re2``) with a length limit.
    """
    qual = ctx.qualname(call) or ""
    if qual.split(".")[0] not in ("re", "regex"):
        return
    pattern = arg(call, 0, "pattern")
    if pattern is None or isinstance(pattern, ast.Constant):
        return
    if isinstance(pattern, ast.Call) and getattr(pattern.func, "attr", "") == "escape":
        return
    flow = ctx.flow(pattern, "regex")
    if flow.level == TAINTED and flow.source != "environment" and not _escaped(pattern, ctx):
        # a library compiling the pattern its caller gives is doing its job: below the display
        confidence = PARAMETER_PATTERN if flow.source == "parameter" else None
        yield ctx.hit(call, flow, flow.explain(f"{qual}() as the pattern"), confidence)


def _escaped(pattern: ast.AST, ctx: Context) -> bool:
    """re.escape applied to the pattern's variable somewhere in the function."""
    if not isinstance(pattern, ast.Name) or ctx.func is None:
        return False
    for node in walk(ctx.func):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "attr", "") == "escape"
                and any(isinstance(t, ast.Name) and t.id == pattern.id for t in node.targets)):
            return True
    return False


@rule("CWS400B", cwe="CWE-400", title="Unbounded read of the request body", severity="medium",
      calls={"read", "readlines"})
def unbounded_request_read(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """The whole request stream read into memory with no size limit.

    **What.** ``request.stream.read()``, ``request.environ["wsgi.input"].read()``,
    ``request.files[...].read()`` and ``readlines()`` with no size argument.

    **Why.** A client sends gigabytes and the worker runs out of memory (CWE-400).

    **Example.**

        body = request.stream.read()

    **Fix.** Read at most a limit (``read(MAX_BYTES + 1)``) and reject larger bodies; set
    Flask's ``MAX_CONTENT_LENGTH``.
    """
    if call.args or call.keywords:
        return
    receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
    if receiver is None:
        return
    field = request_field(receiver)
    if field in ("request.stream", "request.environ", "request.files", "request.FILES"):
        yield Hit(call, f"{ast.unparse(call.func)}() reads the whole {field} into memory", 0.6)
