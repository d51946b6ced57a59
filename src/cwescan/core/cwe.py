"""The CWE catalogue cwescan knows: names, default severities and the families used to score typed hits."""

from __future__ import annotations

import re

# The type of a finding whose evidence does not support a CWE: a model that is sure something is
# wrong but not sure what. NVD's own id for "insufficient information"; never a CWE guess.
UNSPECIFIED = "NVD-CWE-noinfo"

# id -> (name, default severity, GitHub "security-severity" score 0-10)
CWES: dict[str, tuple[str, str, float]] = {
    UNSPECIFIED: ("Possible weakness of uncertain type", "low", 2.0),
    "CWE-20": ("Improper Input Validation", "medium", 5.0),
    "CWE-22": ("Path Traversal", "high", 7.5),
    "CWE-73": ("External Control of File Name or Path", "high", 7.5),
    "CWE-77": ("Command Injection", "critical", 9.8),
    "CWE-78": ("OS Command Injection", "critical", 9.8),
    "CWE-79": ("Cross-site Scripting", "high", 6.1),
    "CWE-89": ("SQL Injection", "critical", 9.8),
    "CWE-90": ("LDAP Injection", "high", 7.5),
    "CWE-94": ("Code Injection", "critical", 9.8),
    "CWE-95": ("Eval Injection", "critical", 9.8),
    "CWE-116": ("Improper Encoding or Escaping of Output", "high", 6.1),
    "CWE-117": ("Log Injection", "medium", 5.3),
    "CWE-200": ("Exposure of Sensitive Information", "medium", 5.3),
    "CWE-209": ("Information Exposure Through an Error Message", "medium", 5.3),
    "CWE-215": ("Information Exposure Through Debug Information", "medium", 5.3),
    "CWE-250": ("Execution with Unnecessary Privileges", "medium", 6.5),
    "CWE-276": ("Incorrect Default Permissions", "medium", 6.5),
    "CWE-259": ("Use of Hard-coded Password", "high", 7.5),
    "CWE-284": ("Improper Access Control", "high", 7.5),
    "CWE-285": ("Improper Authorization", "high", 7.5),
    "CWE-287": ("Improper Authentication", "high", 8.1),
    "CWE-295": ("Improper Certificate Validation", "high", 7.4),
    "CWE-306": ("Missing Authentication for Critical Function", "high", 8.1),
    "CWE-312": ("Cleartext Storage of Sensitive Information", "medium", 5.5),
    "CWE-319": ("Cleartext Transmission of Sensitive Information", "medium", 5.9),
    "CWE-321": ("Use of Hard-coded Cryptographic Key", "high", 7.5),
    "CWE-326": ("Inadequate Encryption Strength", "medium", 5.9),
    "CWE-327": ("Use of a Broken or Risky Cryptographic Algorithm", "medium", 5.9),
    "CWE-328": ("Use of Weak Hash", "medium", 5.9),
    "CWE-330": ("Use of Insufficiently Random Values", "medium", 5.3),
    "CWE-338": ("Use of Cryptographically Weak PRNG", "medium", 5.3),
    "CWE-347": ("Improper Verification of Cryptographic Signature", "high", 7.5),
    "CWE-352": ("Cross-Site Request Forgery", "high", 8.8),
    "CWE-377": ("Insecure Temporary File", "medium", 5.5),
    "CWE-379": ("Creation of Temporary File in Directory with Insecure Permissions", "medium", 5.5),
    "CWE-400": ("Uncontrolled Resource Consumption", "medium", 5.3),
    "CWE-434": ("Unrestricted Upload of File with Dangerous Type", "high", 8.8),
    # the Werkzeug debugger (its console runs code) is the case rules report; Bandit's B201
    # files it under the consequence, CWE-94
    "CWE-489": ("Active Debug Code", "high", 7.5),
    "CWE-502": ("Deserialization of Untrusted Data", "critical", 9.8),
    "CWE-522": ("Insufficiently Protected Credentials", "high", 7.5),
    "CWE-532": ("Insertion of Sensitive Information into Log File", "medium", 5.5),
    "CWE-601": ("Open Redirect", "medium", 6.1),
    "CWE-614": ("Sensitive Cookie Without the Secure Attribute", "medium", 4.3),
    "CWE-605": ("Multiple Binds to the Same Port", "low", 3.7),
    "CWE-611": ("XML External Entity Reference", "high", 7.5),
    "CWE-643": ("XPath Injection", "high", 7.5),
    "CWE-703": ("Improper Check or Handling of Exceptional Conditions", "low", 3.7),
    "CWE-732": ("Incorrect Permission Assignment for Critical Resource", "medium", 6.5),
    "CWE-776": ("XML Entity Expansion", "medium", 6.5),
    "CWE-798": ("Use of Hard-coded Credentials", "high", 7.5),
    "CWE-862": ("Missing Authorization", "high", 7.5),
    "CWE-915": ("Mass Assignment", "high", 7.5),
    "CWE-916": ("Password Hash With Insufficient Computational Effort", "medium", 5.9),
    "CWE-918": ("Server-Side Request Forgery", "high", 8.6),
    "CWE-943": ("NoSQL Injection", "high", 8.1),
    "CWE-1004": ("Sensitive Cookie Without the HttpOnly Flag", "medium", 4.3),
    "CWE-1333": ("Inefficient Regular Expression Complexity", "medium", 5.3),
}

# A typed hit counts when predicted and labelled CWEs fall in the same family: these groups
# name one weakness at different levels of MITRE's hierarchy, and labellers pick either. The
# split stratifies by family too, so a new family moves records between parts: add none without
# re-making the split.
FAMILIES: list[tuple[str, ...]] = [
    ("CWE-78", "CWE-77", "CWE-88"),
    ("CWE-22", "CWE-23", "CWE-36", "CWE-73", "CWE-99"),
    ("CWE-79", "CWE-80"),
    ("CWE-94", "CWE-95", "CWE-96"),
    ("CWE-89", "CWE-564"),
    ("CWE-327", "CWE-328", "CWE-326", "CWE-916"),
    ("CWE-330", "CWE-338"),
    ("CWE-611", "CWE-776", "CWE-827"),
    ("CWE-798", "CWE-259", "CWE-321"),
]
_FAMILY_OF = {cwe: fam[0] for fam in FAMILIES for cwe in fam}

_CWE_RE = re.compile(r"(?i)^\s*(?:cwe)?[-_ ]?0*(\d+)\s*$")


def normalize(cwe: str | int) -> str:
    """'cwe-079', 'CWE_79', '79' and 79 all become 'CWE-79'; ``UNSPECIFIED`` stays itself."""
    if str(cwe).strip().lower() == UNSPECIFIED.lower():
        return UNSPECIFIED
    m = _CWE_RE.match(str(cwe))
    if not m:
        raise ValueError(f"not a CWE id: {cwe!r}")
    return f"CWE-{int(m.group(1))}"


def is_cwe(cwe: str) -> bool:
    """Whether ``cwe`` names a CWE entry (not ``UNSPECIFIED``)."""
    return normalize(cwe) != UNSPECIFIED


def sort_key(cwe: str) -> tuple[int, int]:
    """Numeric order of CWE ids, ``UNSPECIFIED`` last."""
    c = normalize(cwe)
    return (1, 0) if c == UNSPECIFIED else (0, int(c.split("-")[1]))


def family(cwe: str | int) -> str:
    """The representative CWE of cwe's family (itself when it has none)."""
    c = normalize(cwe)
    return _FAMILY_OF.get(c, c)


def same_family(a: str | int, b: str | int) -> bool:
    return family(a) == family(b)


def name(cwe: str | int) -> str:
    c = normalize(cwe)
    return CWES.get(c, (c, "medium", 5.0))[0]


def severity(cwe: str | int) -> str:
    return CWES.get(normalize(cwe), ("", "medium", 5.0))[1]


def security_severity(cwe: str | int) -> float:
    return CWES.get(normalize(cwe), ("", "medium", 5.0))[2]
