"""Run single Bandit checks on our own AST nodes.

Where Bandit already implements a check well, a static rule calls that Bandit plugin function
directly (no second AST walk, no file I/O): the engine hands the rule a call it pre-filtered by
name, and the bridge builds the ``bandit.core.context.Context`` Bandit's tester would build for
that call. The rule keeps its own id and CWE, and records Bandit's test id in the message.
"""

from __future__ import annotations

import ast
import warnings

# Importing Bandit makes stevedore warn about its own deprecated arguments: a message for
# Bandit's authors, not for whoever runs a scan.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from bandit.core import context as b_context
    from bandit.core import utils as b_utils
    from bandit.plugins.crypto_request_no_cert_validation import request_with_no_cert_validation
    from bandit.plugins.hashlib_insecure_functions import hashlib as hashlib_insecure
    from bandit.plugins.jinja2_templates import jinja2_autoescape_false
    from bandit.plugins.yaml_load import yaml_load

TESTS = {
    "B324": hashlib_insecure,
    "B501": request_with_no_cert_validation,
    "B506": yaml_load,
    "B701": jinja2_autoescape_false,
}
# Bandit's confidence words as probabilities (also used by the Bandit detector)
CONFIDENCE = {"LOW": 0.4, "MEDIUM": 0.6, "HIGH": 0.8, "UNDEFINED": 0.3}


def run_test(test_id: str, call: ast.Call, imports: set[str], aliases: dict[str, str], path: str):
    """Bandit's Issue for ``call``, or None."""
    qualname = b_utils.get_call_name(call, aliases)
    raw = {
        "imports": imports, "import_aliases": aliases, "node": call, "call": call,
        "qualname": qualname, "name": qualname.split(".")[-1] if qualname else "",
        "lineno": call.lineno, "linerange": list(range(call.lineno, (call.end_lineno or call.lineno) + 1)),
        "col_offset": call.col_offset, "filename": path, "file_data": None,
    }
    return TESTS[test_id](b_context.Context(raw))
