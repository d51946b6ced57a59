"""Files: path traversal (CWE-22) and unrestricted uploads (CWE-434).

Our own rules: Bandit has no path-traversal or upload check (its B202 covers only
``tarfile.extractall``, which CWS022B covers with the ``filter=`` argument Python 3.12 added).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from cwescan.detectors.static.context import Context, arg, kwarg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.taint import TAINTED

_PATH_SINKS = {
    "open": 0, "io.open": 0, "codecs.open": 0, "os.open": 0, "send_file": 0, "flask.send_file": 0,
    "os.remove": 0, "os.unlink": 0, "os.rmdir": 0, "os.removedirs": 0, "shutil.rmtree": 0,
    "shutil.copy": 1, "shutil.copyfile": 1, "shutil.copy2": 1, "shutil.move": 1, "os.rename": 1,
    "django.http.FileResponse": 0, "FileResponse": 0, "starlette.responses.FileResponse": 0,
    "fastapi.responses.FileResponse": 0, "pathlib.Path": 0, "Path": 0,
}
_PATH_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "unlink", "open"}


@rule("CWS022", cwe="CWE-22", title="File path from untrusted data", severity="high",
      calls={"open", "send_file", "remove", "unlink", "rmdir", "removedirs", "rmtree", "copy",
             "copyfile", "copy2", "move", "rename", "FileResponse", "read_text", "read_bytes",
             "write_text", "write_bytes"})
def path_traversal(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A file is opened, sent or deleted at a path that untrusted data chooses.

    **What.** ``open``, ``io.open``, ``send_file``, ``FileResponse``, ``os.remove``,
    ``shutil.rmtree``/``copy``/``move``, ``Path(...).read_text()``... on a path that a request
    field, a routed view's URL parameter, ``input()`` or ``sys.argv`` reaches, or a path *built*
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
    path is reported at 0.5, one severity lower.

    **Example.**

        @app.route("/notes/<name>")
        def read_note(name):
            return open(os.path.join(NOTES_DIR, name)).read()

    **Fix.** ``safe = os.path.realpath(os.path.join(root, name))`` then refuse it unless
    ``os.path.commonpath([root, safe]) == root``; or ``werkzeug.utils.secure_filename(name)``.
    """
    qual = ctx.qualname(call) or ""
    method = isinstance(call.func, ast.Attribute) and call.func.attr in _PATH_METHODS
    if qual in _PATH_SINKS:
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
    if path is None:
        return
    flow = ctx.flow(path)
    if flow.level_for("path") != TAINTED:
        return
    if flow.source == "parameter" and not flow.built:
        return
    if flow.source == "parameter":  # a library joining its caller's name into a path: often fine
        yield Hit(call, flow.explain(sink), 0.5, lower_severity=True)
    else:
        yield ctx.hit(call, flow, flow.explain(sink))


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
    flow = ctx.flow(target)
    if flow.level_for("upload") == TAINTED and flow.source == "upload-name":
        yield Hit(call, flow.explain(f"{ast.unparse(call.func)}()"), 0.85)
