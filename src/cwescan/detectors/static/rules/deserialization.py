"""Deserialisation (CWE-502) and XML parsing (CWE-611).

CWS502B runs Bandit's B506 (``yaml.load`` without a safe loader) and adds ``unsafe_load``/
``load_all``. The pickle-family and XML checks are our own so that they can use the data flow:
Bandit's B301/B313-B320 flag every call whatever the data, including constants.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.detectors.static.bandit_bridge import CONFIDENCE
from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.patterns import last_name
from cwescan.detectors.static.flow import CONSTANT, TAINTED, UNKNOWN

_PICKLE_MODULES = ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "jsonpickle",
                   "shelve", "joblib", "pandas", "pd", "numpy", "np", "torch", "keras")
_LOADERS = {"loads", "load", "Unpickler", "decode", "open", "read_pickle", "load_model"}


@rule("CWS502", cwe="CWE-502", title="Untrusted data deserialised with pickle", severity="critical",
      calls=_LOADERS)
def unsafe_deserialization(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """Data deserialised by a format that can run code.

    **What.** ``pickle``/``cPickle``/``dill``/``cloudpickle``/``marshal`` ``load(s)``,
    ``pickle.Unpickler``, ``shelve.open``, ``jsonpickle.decode``, ``pandas.read_pickle``,
    ``joblib.load``, ``numpy.load(..., allow_pickle=True)`` and ``torch.load`` without
    ``weights_only=True``.

    **Why.** A pickle stream names callables to call while loading: loading attacker data runs
    attacker code (CWE-502).

    **Confidence.** High when request data, ``input()`` or the environment reaches the data;
    medium (one severity lower) when only a function parameter does or the data is untraced
    (a file of unknown origin, a database value); none for constants and for a round trip
    ``pickle.loads(pickle.dumps(x))``.

    **Example.**

        obj = pickle.loads(request.get_data())

    **Fix.** Use a data-only format (``json``), or sign the data (``hmac``) and verify before
    loading; ``torch.load(..., weights_only=True)``; ``safetensors`` for tensors.
    """
    qual = ctx.qualname(call) or ""
    head = qual.split(".")[0]
    name = qual.rsplit(".", 1)[-1]
    if head not in _PICKLE_MODULES:
        return
    if head in ("numpy", "np"):
        if name != "load" or not is_const(kwarg(call, "allow_pickle"), True):
            return
    elif head == "torch":
        if name != "load" or is_const(kwarg(call, "weights_only"), True):
            return
    elif head in ("pandas", "pd"):
        if name != "read_pickle":
            return
    elif head == "shelve" and name != "open":
        return
    elif head == "jsonpickle" and name != "decode":
        return
    elif head == "keras" and name != "load_model":
        return
    elif name not in ("loads", "load", "Unpickler"):
        return
    data = arg(call, 0, "data") or arg(call, 0, "file") or kwarg(call, "f") or kwarg(call, "filename")
    if data is None:
        return
    made = ctx.assigned_value(data) or data
    if isinstance(made, ast.Call) and last_name(made.func) == "dumps":
        return  # a round trip of the program's own object (copying, or testing pickling)
    flow = ctx.flow(data, "deserialize")
    level = flow.level
    if level == TAINTED:
        yield ctx.hit(call, flow, flow.explain(f"{qual}()"))
    elif level == UNKNOWN:
        where = f": {flow.explain(qual + '()')}" if flow.origin else \
            "; the data is not traced to a trusted source"
        yield Hit(call, f"{qual}() can run code while loading{where}", 0.5, lower_severity=True)


# loaders that build no Python objects: SafeLoader/CSafeLoader (and subclasses named for them)
# and BaseLoader (strings, lists and dicts only)
_SAFE_LOADER = re.compile(r"(Safe|Base)Loader\b")


@rule("CWS502B", cwe="CWE-502", title="YAML loaded with an unsafe loader", severity="high",
      calls={"load", "load_all", "unsafe_load", "full_load", "unsafe_load_all"}, bandit=("B506",))
def yaml_unsafe_load(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """YAML parsed with a loader that builds arbitrary Python objects (Bandit B506 and more).

    **What.** ``yaml.load`` without ``SafeLoader``/``CSafeLoader`` (Bandit's B506 decides this),
    plus ``yaml.unsafe_load``/``unsafe_load_all`` and ``yaml.load_all`` with an unsafe or no
    loader. ``BaseLoader`` is safe too (it builds strings, lists and dicts only), which B506 does
    not know. A snippet without its imports is judged as if it imported ``yaml``.

    **Why.** Tags such as ``!!python/object/apply:os.system`` run code while loading (CWE-502).

    **Confidence.** Bandit's confidence (HIGH: 0.8), raised to the source's when request data or
    a parameter reaches the document; 0.25 (below the default display confidence, 0.3) when the
    document is a constant of the code.

    **Example.**

        config = yaml.load(text, Loader=yaml.Loader)

    **Fix.** ``yaml.safe_load(text)``.
    """
    qual = ctx.qualname(call) or ""
    if "yaml" not in qual.split("."):
        return
    name = qual.rsplit(".", 1)[-1]
    loader = arg(call, 1, "Loader")
    if loader is not None and _SAFE_LOADER.search(ast.unparse(loader)):
        return
    if name == "load":
        issue = ctx.bandit("B506", call)
        if issue is None:
            return
        base, text = CONFIDENCE.get(str(issue.confidence), 0.6), f" (Bandit {issue.test_id or 'B506'})"
    elif name in ("unsafe_load", "unsafe_load_all"):
        base, text = 0.8, ""
    elif name in ("load_all", "full_load"):
        if name == "full_load" or loader is None:
            base, text = 0.6, ""
        else:
            base, text = 0.8, ""
    else:
        return
    document = arg(call, 0, "stream")
    flow = ctx.flow(document)
    if flow.level == TAINTED:
        yield Hit(call, f"unsafe YAML loader{text}: {flow.explain(qual + '()')}", max(base, flow.confidence))
    elif flow.level == CONSTANT and document is not None:
        # a document written in the code: its tags are the author's; the call is still the
        # unsafe one (below the default display confidence)
        yield Hit(call, f"{qual}() with an unsafe loader, on a document written in the code{text}", 0.25)
    else:
        yield Hit(call, f"{qual}() with an unsafe loader can build arbitrary objects{text}", base)


_XML_PARSE = {"parse", "fromstring", "XML", "iterparse", "parseString", "make_parser", "XMLID",
              "fromstringlist", "XMLParser"}
_XML_MODULES = ("xml.etree", "xml.dom", "xml.sax", "lxml", "xml.parsers")


@rule("CWS611", cwe="CWE-611", title="XML from untrusted data parsed without defusedxml",
      severity="high", calls=_XML_PARSE - {"XMLParser"})
def xml_untrusted(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """Untrusted XML parsed with the standard library or lxml instead of ``defusedxml``.

    **What.** ``xml.etree.ElementTree``/``cElementTree`` ``parse``/``fromstring``/``XML``/
    ``iterparse``, ``xml.dom.minidom``/``pulldom`` ``parse``/``parseString``, ``xml.sax.parse``,
    ``lxml.etree.parse``/``fromstring``/``XML`` on data that request fields, parameters or
    ``input()`` reach (or, for lxml, data not traced at all).

    **Why.** Entity declarations in the document read local files or URLs (XXE, lxml) or
    expand exponentially ("billion laughs", all of them), CWE-611/776.

    **Example.**

        root = ET.fromstring(request.data)

    **Fix.** ``import defusedxml.ElementTree as ET`` (same API), or an lxml parser with
    ``resolve_entities=False, no_network=True``.
    """
    qual = ctx.qualname(call) or ""
    if not qual.startswith(_XML_MODULES):
        return
    data = arg(call, 0, "source") or arg(call, 0, "text") or arg(call, 0, "string")
    if data is None or isinstance(data, ast.Constant):
        return
    flow = ctx.flow(data, "xml")
    level = flow.level
    if level == TAINTED:
        yield ctx.hit(call, flow, flow.explain(f"{qual}()"), min(flow.confidence, 0.8))
    elif level == UNKNOWN and qual.startswith("lxml") and kwarg(call, "parser") is None \
            and len(call.args) < 2:
        yield Hit(call, f"{qual}() with lxml's default parser on data not traced to a trusted "
                        "source", 0.4, lower_severity=True)


@rule("CWS611B", cwe="CWE-611", title="XML parser resolves external entities", severity="high",
      calls={"XMLParser", "XSLTAccessControl"})
def xml_entities_enabled(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An lxml parser configured to resolve entities or use the network.

    **What.** ``lxml.etree.XMLParser(resolve_entities=True)`` or ``no_network=False``.

    **Why.** Documents parsed with it can read local files and reach internal URLs through
    external entities (XXE, CWE-611).

    **Example.**

        parser = etree.XMLParser(resolve_entities=True)

    **Fix.** ``etree.XMLParser(resolve_entities=False, no_network=True)`` or ``defusedxml``.
    """
    qual = ctx.qualname(call) or ""
    if not qual.startswith("lxml"):
        return
    bad = [k.arg for k in call.keywords
           if (k.arg == "resolve_entities" and is_const(k.value, True))
           or (k.arg == "no_network" and is_const(k.value, False))
           or (k.arg == "load_dtd" and is_const(k.value, True))]
    if bad:
        settings = ", ".join(f"{b}={b != 'no_network'}" for b in bad)
        yield Hit(call, f"{qual}() with {settings} lets documents pull external entities", 0.8)
