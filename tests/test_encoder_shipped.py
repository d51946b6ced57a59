"""The shipped encoder (src/cwescan/models/encoder) end to end on CPU."""

import pytest

from cwescan.ml.artifacts import model_dir
from cwescan.core.units import parse_source

pytestmark = pytest.mark.slow

VULNERABLE = '''import sqlite3
from flask import request


def find_user():
    name = request.args.get("name")
    conn = sqlite3.connect("app.db")
    cur = conn.cursor()
    cur.execute("SELECT * FROM users WHERE name = '%s'" % name)
    return cur.fetchall()
'''

# the fixed twin: the same code with a parameterised query
SAFE = VULNERABLE.replace("\"SELECT * FROM users WHERE name = '%s'\" % name", "\"SELECT * FROM users WHERE name = ?\", (name,)")


def test_shipped_encoder_separates_a_vulnerable_query_from_its_fix():
    if not (model_dir("encoder") / "card.json").is_file():
        pytest.fail("no shipped encoder in src/cwescan/models/encoder")
    from cwescan.detectors import create

    det = create("encoder")
    vuln_units = parse_source("vuln.py", VULNERABLE).units
    safe_units = parse_source("safe.py", SAFE).units
    v = max(det.score(vuln_units))
    s = max(det.score(safe_units))
    assert v > s
    assert v >= det.threshold > s
    assert det.detect(safe_units) == []
    findings = det.detect(vuln_units)
    assert findings and all(f.detector == "encoder" for f in findings)
    # typed by the family head, placed by the line head on the execute() call
    assert any(f.cwe == "CWE-89" and f.start_line == 9 for f in findings)
