"""Files: path traversal (CWE-22), unrestricted uploads (CWE-434), insecure temporary files
(CWE-377) and permissions that let anyone write (CWE-732).

Our own rules: Bandit has no path-traversal or upload check (its B202 covers only
``tarfile.extractall``, which CWS022B covers with the ``filter=`` argument Python 3.12 added).
CWS377 covers Bandit's B306 (``mktemp``) and the part of B108 (hard-coded temporary paths) that
creates a file; CWS732 the world-writable half of B103 (``chmod``).
"""

from __future__ import annotations

import ast
import re
import stat
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.core.testcode import is_test_path
from cwescan.detectors.static.context import Context, arg, kwarg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.flow import TAINTED
from cwescan.detectors.static.patterns import is_validator

_PATH_SINKS = {
    "open": 0, "io.open": 0, "codecs.open": 0, "os.open": 0, "send_file": 0, "flask.send_file": 0,
    "os.remove": 0, "os.unlink": 0, "os.rmdir": 0, "os.removedirs": 0, "shutil.rmtree": 0,
    "shutil.copy": 1, "shutil.copyfile": 1, "shutil.copy2": 1, "shutil.move": 1, "os.rename": 1,
    "django.http.FileResponse": 0, "FileResponse": 0, "starlette.responses.FileResponse": 0,
    "fastapi.responses.FileResponse": 0, "pathlib.Path": 0, "Path": 0,
}
_PATH_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "unlink", "open"}
# Calls that only probe a path (does it exist, what size is it): a traversal there tells the
# client which files exist, less than reading them (PROBE_SHARE of the confidence, one
# severity lower)
_PROBES = {"os.path.exists": 0, "os.path.isfile": 0, "os.path.isdir": 0, "os.path.getsize": 0,
           "os.path.lexists": 0, "os.stat": 0, "os.path.getmtime": 0}
_PROBE_METHODS = {"exists", "is_file", "is_dir", "stat"}
PROBE_SHARE = 0.7
# A plain parameter joined into a path: on the labelled split such findings are about as often in
# fixed code as in vulnerable code, and in library code the path is the caller's to choose, so
# they are kept below the default display confidence (the model's review can raise them)
PARAMETER_JOIN = 0.25
# constructors of in-memory or temporary file objects: ``send_file(buf)`` sends the object's
# content, whatever was written into it, and names no path
_FILE_OBJECTS = frozenset({"BytesIO", "StringIO", "TemporaryFile", "NamedTemporaryFile",
                           "SpooledTemporaryFile"})
# read from the request itself: a routed view's parameter is also what a method taking a
# ``request`` argument is assumed to have, too weak a guess for a mere probe
_PROBE_SOURCES = frozenset({"request", "upload", "upload-name", "input", "network"})


@rule("CWS022", cwe="CWE-22", title="File path from untrusted data", severity="high",
      calls={"open", "send_file", "remove", "unlink", "rmdir", "removedirs", "rmtree", "copy",
             "copyfile", "copy2", "move", "rename", "FileResponse", "read_text", "read_bytes",
             "write_text", "write_bytes", "exists", "isfile", "isdir", "getsize", "lexists", "stat",
             "getmtime", "is_file", "is_dir"},
      minor_calls={"exists", "isfile", "isdir", "getsize", "lexists", "stat", "getmtime", "is_file",
                   "is_dir"})
def path_traversal(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A file is opened, sent or deleted at a path that untrusted data chooses.

    **What.** ``open``, ``io.open``, ``send_file``, ``FileResponse``, ``os.remove``,
    ``shutil.rmtree``/``copy``/``move``, ``Path(...).read_text()``... on a path that a request
    field, a routed view's URL parameter or ``input()`` reaches, or a path *built*
    (``os.path.join``, ``+``, f-string) from a function parameter.

    **Why.** ``../`` segments or an absolute path escape the intended folder and read or
    overwrite any file the process can reach (CWE-22).

    **Confidence.** Tainted paths only: a path that is merely untraced is too common to flag.
    ``os.path.basename``, ``secure_filename`` and a validation guard clear the taint: an ``if``
    that rejects a path outside the folder (``if not path.startswith(root): abort(404)``,
    ``commonpath`` checks), or one that opens it only inside the check (``if
    path.startswith(root): open(path)``, ``if name in ALLOWED: ...``). A ``startswith``,
    ``commonpath`` or ``is_relative_to`` check counts only on a path normalised first
    (``os.path.realpath``/``abspath``/``normpath``, ``Path.resolve()``):
    ``os.path.join(root, "../etc/passwd")`` still starts with ``root``. A plain parameter
    passed straight to ``open()`` is the caller's choice and is not flagged; one joined into a
    path is reported at 0.25, one severity lower, under the default display confidence: such
    findings are as common in fixed code as in vulnerable code of the labelled split, and in a
    library the caller chooses the path (the model's second opinion can raise them). The command line (``sys.argv``, argparse) is not
    a source here: a command-line tool opens the files its user names. A path that is only
    probed (``os.path.exists``/``isfile``/``getsize``, ``Path.exists()``/``stat()``) tells the
    client which files exist: 0.7 of the confidence, one severity lower, and only when a request
    field or ``input()`` chooses it (tools probe the paths their environment names). A file
    object (``buf = io.BytesIO()``; ``buf.write(data)``; ``send_file(buf)``) names no path.

    **Example.**

        @app.route("/notes/<name>")
        def read_note(name):
            return open(os.path.join(NOTES_DIR, name)).read()

    **Fix.** ``safe = os.path.realpath(os.path.join(root, name))`` then refuse it unless
    ``os.path.commonpath([root, safe]) == root``; or ``werkzeug.utils.secure_filename(name)``.
    """
    qual = ctx.qualname(call) or ""
    attr = call.func.attr if isinstance(call.func, ast.Attribute) else ""
    probe = qual in _PROBES or (attr in _PROBE_METHODS and not qual.startswith("os."))
    method = attr in _PATH_METHODS or (attr in _PROBE_METHODS and probe)
    if qual in _PROBES:
        path, sink = arg(call, 0, "path"), f"{qual}()"
    elif qual in _PATH_SINKS:
        path = arg(call, _PATH_SINKS[qual], "file") or kwarg(call, "path") or kwarg(call, "filename")
        if qual in ("pathlib.Path", "Path"):
            return  # the Path object itself is harmless; its methods below are the sinks
        sink = f"{qual}()"
    elif method and isinstance(call.func.value, ast.Call) and (ctx.qualname(call.func.value) or "") \
            in ("pathlib.Path", "Path"):
        path = arg(call.func.value, 0)
        sink = f"Path(...).{call.func.attr}()"
    elif method and call.func.attr != "open":
        path = call.func.value
        sink = f"{ast.unparse(call.func)}()"
    else:
        return
    if path is None or _file_object(path, ctx):
        return
    flow = ctx.flow(path, "path")
    if flow.level != TAINTED:
        return
    if flow.caller_chosen:
        return
    if probe and flow.source not in _PROBE_SOURCES:
        return  # a library or tool probing the paths its caller, user or environment names: its job
    if probe and _checked_before(call, ctx):
        return
    if flow.source == "parameter":  # a library joining its caller's name into a path: often fine
        yield Hit(call, flow.explain(sink), PARAMETER_JOIN, lower_severity=True)
    elif probe:
        yield ctx.hit(call, flow, flow.explain(sink), flow.confidence * PROBE_SHARE, lower_severity=True)
    else:
        yield ctx.hit(call, flow, flow.explain(sink))


def _file_object(path: ast.AST, ctx: Context) -> bool:
    """``path`` is a variable last assigned an in-memory or temporary file object."""
    value = ctx.assigned_value(path)
    return isinstance(value, ast.Call) and (ctx.qualname(value) or "").rsplit(".", 1)[-1] in _FILE_OBJECTS


def _checked_before(call: ast.Call, ctx: Context) -> bool:
    """``if inside(root, p) and os.path.isfile(p):`` (also under ``not``): the probe is an
    operand of an ``and`` whose earlier operand validates the path, so it runs only once that
    check passed."""
    test = getattr(ctx.stmt, "test", None)
    for node in walk(test) if test is not None else ():
        if not (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And)):
            continue
        for operand in node.values:
            if any(n is call for n in walk(operand)):
                break
            if any(is_validator(n) for n in walk(operand)):
                return True
    return False


@rule("CWS022B", cwe="CWE-22", title="Archive extracted without a member filter", severity="high",
      calls={"extractall", "extract"})
def tar_extract(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """``tarfile`` archive extracted without ``filter=`` or a members check.

    **What.** ``TarFile.extractall()``/``extract()`` in a module that imports ``tarfile``, called
    without ``filter=`` ("data" or "tar", Python 3.12+) and without a ``members=`` selection.

    **Why.** Archive members named ``../../etc/cron.d/x`` or absolute paths, and symlinks, are
    written outside the target folder (CWE-22, "tar slip").

    **Example.**

        with tarfile.open(upload) as tar:
            tar.extractall(dest)

    **Fix.** ``tar.extractall(dest, filter="data")``.
    """
    if not ctx.imported("tarfile"):
        return
    qual = ctx.qualname(call) or ""
    if qual.startswith(("zipfile", "shutil")) or "zip" in qual.lower():
        return  # zipfile sanitises member names itself
    if kwarg(call, "filter") is not None or kwarg(call, "members") is not None:
        return
    if call.func.attr == "extractall" and len(call.args) >= 2:
        return  # members given positionally
    yield Hit(call, f"{ast.unparse(call.func)}() writes archive members wherever their names "
                    "point; pass filter='data'", 0.6)


@rule("CWS434", cwe="CWE-434", title="Upload saved under its client-chosen name", severity="high",
      calls={"save", "open", "write_bytes", "save_as"})
def unrestricted_upload(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An uploaded file is saved under the filename the client sent.

    **What.** ``file.save(path)`` (Werkzeug ``FileStorage``), ``open(path, "wb")``... where
    ``path`` contains the upload's ``.filename`` not passed through ``secure_filename`` and not
    checked by an extension allow-list (``if not allowed_file(f.filename): abort(400)``).

    **Why.** The client picks the name: ``shell.php``, ``../app.py``, ``.htaccess``; saved as-is
    it can be executed by the server or overwrite code (CWE-434).

    **Example.**

        f = request.files["doc"]
        f.save(os.path.join(UPLOADS, f.filename))

    **Fix.** ``name = secure_filename(f.filename)``, check its extension against an allow-list,
    better still store under a generated name.
    """
    qual = ctx.qualname(call) or ""
    if isinstance(call.func, ast.Attribute) and call.func.attr in ("save", "save_as"):
        target = arg(call, 0, "dst")
    elif qual in ("open", "io.open"):
        target = arg(call, 0, "file")
    else:
        return
    if target is None:
        return
    flow = ctx.flow(target, "upload")
    if flow.level == TAINTED and flow.source == "upload-name":
        yield Hit(call, flow.explain(f"{ast.unparse(call.func)}()"), 0.85)


_TEMP_NAME_FUNCS = {"tempfile.mktemp", "os.tempnam", "os.tmpnam"}
# a fixed name in a directory every local user may write to
_SHARED_TEMP = re.compile(r"^(/tmp|/var/tmp|/dev/shm)/[^/]")
_WRITE_MODE = re.compile(r"[wax+]")


@rule("CWS377", cwe="CWE-377", title="Insecure temporary file", severity="medium",
      calls={"mktemp", "tempnam", "tmpnam", "open", "write_text", "write_bytes"})
def insecure_temp_file(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A temporary file whose name another local user can predict or take first.

    **What.** ``tempfile.mktemp()``, ``os.tempnam()``, ``os.tmpnam()`` (they return a name, not a
    file), and a file created for writing at a fixed path in a shared temporary directory
    (``open("/tmp/report.txt", "w")``, ``Path("/var/tmp/x").write_text(...)``; ``/tmp``,
    ``/var/tmp``, ``/dev/shm``).

    **Why.** Between choosing the name and opening it, or because the name is known in advance,
    another user can create the file or a symlink there first: the program then writes into a
    file the attacker controls or overwrites one it points to (CWE-377/379).

    **Confidence.** 0.8 for the name functions; 0.6, one severity lower, for a fixed path (on
    a single-user machine or in a container it is only untidy). Test files are not flagged for
    fixed paths.

    **Example.**

        path = tempfile.mktemp(suffix=".csv")
        with open(path, "w") as f: ...

    **Fix.** ``tempfile.NamedTemporaryFile()``, ``tempfile.mkstemp()`` or
    ``tempfile.TemporaryDirectory()``: they create the file atomically with a random name.
    """
    qual = ctx.qualname(call) or ""
    if qual in _TEMP_NAME_FUNCS:
        yield Hit(call, f"{qual}() returns a predictable name without creating the file", 0.8)
        return
    if is_test_path(ctx.path):
        return
    if qual in ("open", "io.open"):
        path, mode = arg(call, 0, "file"), arg(call, 1, "mode")
        writes = isinstance(mode, ast.Constant) and isinstance(mode.value, str) and _WRITE_MODE.search(mode.value)
    elif isinstance(call.func, ast.Attribute) and call.func.attr in ("write_text", "write_bytes") \
            and isinstance(call.func.value, ast.Call) and (ctx.qualname(call.func.value) or "") in ("pathlib.Path", "Path"):
        path, writes = arg(call.func.value, 0), True
    else:
        return
    if writes and isinstance(path, ast.Constant) and isinstance(path.value, str) and _SHARED_TEMP.match(path.value):
        yield Hit(call, f"a file is created at the fixed path {path.value!r} in a shared temporary directory",
                  0.6, lower_severity=True)


def _mode_bits(node: ast.AST) -> int | None:
    """The permission bits ``node`` certainly sets: an integer, ``stat.S_*`` names, and ``|``
    or ``+`` of them; bits or-ed onto an unknown value (``st.st_mode | stat.S_IWOTH``) count.
    None when nothing is known."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, (ast.Attribute, ast.Name)):
        name = node.attr if isinstance(node, ast.Attribute) else node.id
        value = getattr(stat, name, None) if name.startswith("S_I") else None
        return value if isinstance(value, int) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.Add)):
        left, right = _mode_bits(node.left), _mode_bits(node.right)
        if isinstance(node.op, ast.Add):
            return left + right if left is not None and right is not None else None
        if left is None and right is None:
            return None
        return (left or 0) | (right or 0)
    return None


@rule("CWS732", cwe="CWE-732", title="File made writable by every user", severity="high",
      calls={"chmod", "fchmod", "lchmod"})
def world_writable(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A file's permissions are set so that any local user may change it.

    **What.** ``os.chmod``/``os.fchmod``/``os.lchmod``/``Path.chmod`` with a mode holding the
    "others may write" bit (``0o777``, ``0o666``, ``stat.S_IWOTH``, ``stat.S_IRWXO``), also when
    or-ed onto the current mode. ``mkdir``/``makedirs``/``os.open`` modes are not checked: the
    umask applies to them. A mode with the sticky bit (``0o1777``) makes a shared folder like
    ``/tmp``, where users cannot remove or replace each other's files, and is not flagged.

    **Why.** Anyone on the machine can then rewrite the file: a script or configuration becomes
    code or settings an attacker chooses (CWE-732). 0.8; 0.9 for an executable bit too.

    **Example.**

        os.chmod(script_path, 0o777)

    **Fix.** Give write access to the owner only: ``0o755`` for programs, ``0o644`` or ``0o600``
    for data and secrets.
    """
    qual = ctx.qualname(call) or ""
    if qual in ("os.chmod", "os.fchmod", "os.lchmod"):
        mode = arg(call, 1, "mode")
    elif isinstance(call.func, ast.Attribute) and call.func.attr == "chmod" and not qual.startswith("os."):
        mode = arg(call, 0, "mode")
    else:
        return
    bits = _mode_bits(mode) if mode is not None else None
    if bits is None or not bits & stat.S_IWOTH or bits & stat.S_ISVTX:
        return  # with the sticky bit it is a shared folder like /tmp: users cannot touch others' files
    executable = bool(bits & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    yield Hit(call, f"{ast.unparse(call.func)}() gives every user write access (mode {oct(bits)})",
              0.9 if executable else 0.8)
