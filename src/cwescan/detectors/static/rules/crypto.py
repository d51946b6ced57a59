"""Cryptography: weak hashes (CWE-328), broken ciphers (CWE-327), weak randomness (CWE-330/338),
disabled certificate checks (CWE-295) and tokens whose signature is not checked (CWE-347).

CWS328 runs Bandit's B324 (hashlib md5/sha1/``new("md5")`` unless ``usedforsecurity=False``) and
adds the ``cryptography``/PyCryptodome hash classes and a higher confidence when a password is
hashed. The cipher, randomness and TLS rules are our own: Bandit's B311 flags every ``random``
call (CWS330 only those making secrets), and its B501 covers requests/httpx only (CWS295 covers
any client's ``verify=False``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.bandit_bridge import CONFIDENCE
from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.patterns import dotted, last_name
from cwescan.detectors.static.registry import Hit, rule

_SECRETISH = re.compile(r"(?i)(passw|pwd|secret|token|nonce|salt|otp|csrf|api_?key|session_?(id|key)|"
                        r"private_?key|reset|captcha|credential|(^|_)auth($|_)|(^|_)(key|pin|iv)($|_))")
_WEAK_HASH_CLASSES = {"MD5", "SHA1", "MD4", "MD2"}


@rule("CWS328", cwe="CWE-328", title="Weak hash (MD5/SHA-1)", severity="medium",
      calls={"md5", "sha1", "md4", "new", "MD5", "SHA1", "MD4", "MD2", "crypt", "mksalt"},
      bandit=("B324",))
def weak_hash(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """MD5, SHA-1 (or MD4/MD2) used where a strong hash is needed.

    **What.** ``hashlib.md5``/``sha1``/``new("md5")`` without ``usedforsecurity=False`` and
    weak ``crypt`` methods (Bandit's B324 decides these), ``cryptography``'s ``hashes.MD5()``/
    ``SHA1()``, PyCryptodome ``MD5.new()``.

    **Why.** Collisions for both are practical; for passwords any fast hash is brute-forced
    (CWE-328, CWE-916).

    **Confidence.** Bandit's (HIGH: 0.8) for the hashlib calls, 0.6 for the hash classes, 0.9
    when the hashed value's names say it is a password or secret.

    **Example.**

        digest = hashlib.md5(password.encode()).hexdigest()

    **Fix.** ``hashlib.sha256`` for integrity; ``hashlib.scrypt``/argon2/bcrypt for passwords;
    ``usedforsecurity=False`` for non-security checksums.
    """
    qual = ctx.qualname(call) or ""
    parts = qual.split(".")
    if "hashlib" in parts or ("crypt" in parts and parts[-1] in ("crypt", "mksalt")):
        issue = ctx.bandit("B324", call)
        if issue is None:
            return
        conf, text = CONFIDENCE.get(str(issue.confidence), 0.6), f"{issue.text} (Bandit B324)"
    elif parts[-1] in _WEAK_HASH_CLASSES and ("hashes" in parts or "cryptography" in qual):
        conf, text = 0.6, f"{qual}() is a weak hash"
    elif parts[-1] == "new" and len(parts) >= 2 and parts[-2] in _WEAK_HASH_CLASSES and "Hash" in qual:
        conf, text = 0.6, f"{qual}() is a weak hash"
    else:
        return
    data = arg(call, 1, "data") if parts[-1] == "new" else arg(call, 0, "data")
    names = " ".join(n.id for n in walk(data) if isinstance(n, ast.Name)) if data is not None else ""
    if _SECRETISH.search(names) or (ctx.func is not None and "passw" in getattr(ctx.func, "name", "").lower()):
        conf, text = 0.9, f"a password or secret is hashed with a fast, weak hash: {text}"
    yield Hit(call, text, conf)


_WEAK_CIPHERS = {"DES", "DES3", "ARC4", "ARC2", "Blowfish", "XOR", "CAST", "TripleDES", "RC4", "IDEA",
                 "SEED", "CAST5"}


@rule("CWS327", cwe="CWE-327", title="Broken or risky cipher", severity="medium",
      calls={"new", "ARC4", "TripleDES", "Blowfish", "IDEA", "CAST5", "SEED", "ECB", "Cipher", "DES"})
def weak_cipher(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A broken cipher (DES, 3DES, RC4, Blowfish, ...) or the ECB mode.

    **What.** PyCryptodome/PyCrypto ``DES``/``DES3``/``ARC4``/``ARC2``/``Blowfish``/``XOR``
    ``.new()``, any ``.new(key, X.MODE_ECB)``, ``cryptography``'s ``algorithms.ARC4``/
    ``TripleDES``/``Blowfish``/``IDEA``/``CAST5``/``SEED`` and ``modes.ECB()``. In a snippet cut
    out of its file (no import of ``DES3`` left), ``DES3.new()`` counts as PyCryptodome's.

    **Why.** These ciphers have small keys or blocks or known biases; ECB encrypts equal blocks
    to equal output and leaks patterns (CWE-327).

    **Example.**

        cipher = DES.new(key, DES.MODE_ECB)

    **Fix.** AES-GCM or ChaCha20-Poly1305 (``cryptography``'s ``AESGCM``), never ECB.
    """
    qual = ctx.qualname(call) or ""
    parts = qual.split(".")
    last = parts[-1]
    if last == "new" and len(parts) >= 2 and parts[-2] in _WEAK_CIPHERS \
            and ("Cipher" in qual or ctx.lost_import(parts[0])):
        yield Hit(call, f"{parts[-2]} is a broken cipher ({qual}())", 0.8)
        return
    if last == "new" and any(isinstance(a, ast.Attribute) and a.attr == "MODE_ECB"
                             for a in [*call.args, *(k.value for k in call.keywords)]):
        yield Hit(call, f"ECB mode leaks patterns of the plaintext ({qual}())", 0.8)
        return
    if last in _WEAK_CIPHERS and ("algorithms" in parts or "cryptography" in qual):
        yield Hit(call, f"{last} is a broken or legacy cipher ({qual}())", 0.8)
    elif last == "ECB" and ("modes" in parts or "cryptography" in qual):
        yield Hit(call, "ECB mode leaks patterns of the plaintext", 0.8)


_RANDOM_FUNCS = {"random", "randint", "choice", "choices", "randrange", "getrandbits", "sample",
                 "shuffle", "uniform", "randbytes", "normalvariate", "gauss", "triangular", "expovariate"}


@rule("CWS330", cwe="CWE-338", title="Predictable random values used for a secret",
      severity="medium", calls=_RANDOM_FUNCS)
def weak_random(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """The ``random`` module makes a token, password, key, salt or nonce.

    **What.** ``random.random/randint/choice/choices/randrange/getrandbits/sample/randbytes``
    (module functions or a ``random.Random()`` instance) in a function, assignment or return
    whose names say it makes a secret (token, password, secret, key, salt, nonce, otp, csrf,
    session id, reset code, pin), or assigned to a name the function then stores in the session
    (``session["code"] = value``) or sends as a cookie (``set_cookie("id", value)``): a value
    the server later trusts as the client's. Other uses of ``random`` (simulations, jitter,
    shuffling test data) are not flagged.

    **Why.** ``random`` is a Mersenne Twister: 624 outputs reveal its state and every future
    value, so tokens made with it can be predicted (CWE-330/338).

    **Example.**

        def reset_token():
            return "".join(random.choice(ALPHABET) for _ in range(32))

    **Fix.** ``secrets.token_urlsafe()``, ``secrets.choice``, ``secrets.randbelow``.
    """
    qual = ctx.qualname(call) or ""
    if not (qual.startswith("random.") or qual in _RANDOM_FUNCS and ctx.imported("random")):
        return
    if qual.startswith("random.SystemRandom"):
        return
    names = []
    if ctx.func is not None:
        names.append(getattr(ctx.func, "name", ""))
    stmt = ctx.stmt
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names += [ast.unparse(t) for t in targets]
    elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        names += [k.arg or "" for k in stmt.value.keywords]
    context = " ".join(names)
    if _SECRETISH.search(context):
        yield Hit(call, f"{qual}() is predictable but makes a secret here ({context.strip()})", 0.75)
    elif isinstance(stmt, ast.Assign) and ctx.func is not None and (
            use := _trusted_later({t.id for t in stmt.targets if isinstance(t, ast.Name)}, ctx.func)):
        yield Hit(call, f"{qual}() is predictable but its value is {use}", 0.75)


def _trusted_later(names: set[str], func: ast.AST) -> str:
    """How the function hands one of ``names`` to the client as something it will trust back:
    stored in the session, or set as a cookie ("" when neither)."""
    def reads(expr: ast.AST | None) -> bool:
        return expr is not None and any(isinstance(n, ast.Name) and n.id in names for n in walk(expr))
    for node in walk(func):
        if isinstance(node, ast.Assign) and reads(node.value) and any(
                isinstance(t, ast.Subscript) and "session" in (dotted(t.value) or "").lower() for t in node.targets):
            return "stored in the session"
        if isinstance(node, ast.Call) and last_name(node.func) == "set_cookie" and (
                any(reads(a) for a in node.args[1:2]) or reads(kwarg(node, "value"))):
            return "sent as a cookie"
    return ""


@rule("CWS295", cwe="CWE-295", title="TLS certificate verification disabled", severity="high",
      node=ast.keyword)
def tls_verify_disabled(kw: ast.keyword, ctx: Context) -> Iterator[Hit]:
    """An HTTP or TLS call told not to check certificates.

    **What.** ``verify=False`` (requests, httpx and look-alikes), ``cert_reqs=ssl.CERT_NONE`` /
    ``"CERT_NONE"``, ``check_hostname=False``, ``ssl=False`` passed to a call.

    **Why.** Anyone on the network path can impersonate the server and read or change the
    traffic (CWE-295).

    **Example.**

        requests.get(url, verify=False)

    **Fix.** Leave verification on; for a private CA pass ``verify="/path/ca.pem"``.
    """
    value = kw.value
    if kw.arg == "verify" and is_const(value, False):
        yield Hit(kw, "verify=False turns off certificate checks", 0.8)
    elif kw.arg in ("cert_reqs", "verify_mode") and "CERT_NONE" in ast.unparse(value):
        yield Hit(kw, f"{kw.arg}=CERT_NONE turns off certificate checks", 0.8)
    elif kw.arg == "check_hostname" and is_const(value, False):
        yield Hit(kw, "check_hostname=False accepts certificates for any host", 0.6)


@rule("CWS295B", cwe="CWE-295", title="Unverified TLS context", severity="high",
      calls={"_create_unverified_context", "_create_stdlib_context", "_https_verify_certificates"})
def unverified_context(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An SSL context that skips certificate checks.

    **What.** ``ssl._create_unverified_context()``, ``ssl._create_stdlib_context()`` used as a
    client context, ``ssl._https_verify_certificates(False)``.

    **Why.** Connections made with it accept any certificate (CWE-295).

    **Example.**

        urllib.request.urlopen(url, context=ssl._create_unverified_context())

    **Fix.** ``ssl.create_default_context()``.
    """
    qual = ctx.qualname(call) or ""
    if not qual.startswith("ssl."):
        return
    if qual.endswith("_https_verify_certificates") and not is_const(arg(call, 0, "enable"), False):
        return
    yield Hit(call, f"{qual}() does not verify certificates", 0.8)


@rule("CWS295C", cwe="CWE-295", title="Certificate checks switched off on a context",
      severity="high", node=ast.Assign)
def context_verification_off(node: ast.Assign, ctx: Context) -> Iterator[Hit]:
    """An SSL context's checks switched off by assignment.

    **What.** ``context.verify_mode = ssl.CERT_NONE`` or ``context.check_hostname = False``.

    **Why.** The context then accepts any certificate, or one for any host (CWE-295).

    **Example.**

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    **Fix.** Keep the defaults of ``ssl.create_default_context()``; load a private CA with
    ``load_verify_locations``.
    """
    for t in node.targets:
        if not isinstance(t, ast.Attribute):
            continue
        if t.attr == "verify_mode" and "CERT_NONE" in ast.unparse(node.value):
            yield Hit(node, "verify_mode = CERT_NONE turns off certificate checks", 0.8)
        elif t.attr == "check_hostname" and is_const(node.value, False):
            yield Hit(node, "check_hostname = False accepts certificates for any host", 0.6)



_WEAK_PROTOCOLS = {"PROTOCOL_SSLv2", "PROTOCOL_SSLv3", "PROTOCOL_SSLv23", "PROTOCOL_TLSv1",
                   "PROTOCOL_TLSv1_1", "SSLv2_METHOD", "SSLv3_METHOD", "SSLv23_METHOD",
                   "TLSv1_METHOD", "TLSv1_1_METHOD"}


@rule("CWS327B", cwe="CWE-327", title="Broken SSL/TLS protocol version", severity="medium",
      node=ast.Attribute)
def weak_tls_version(node: ast.Attribute, ctx: Context) -> Iterator[Hit]:
    """SSL 2/3 or TLS 1.0/1.1 selected.

    **What.** ``ssl.PROTOCOL_SSLv2``/``SSLv3``/``SSLv23``/``TLSv1``/``TLSv1_1`` and pyOpenSSL's
    ``SSL.SSLv2_METHOD``/``SSLv3_METHOD``/``TLSv1_METHOD``/``TLSv1_1_METHOD`` wherever they are
    used (argument, default value, assignment), like Bandit's B502/B503.

    **Why.** These protocol versions have practical attacks (POODLE, BEAST, DROWN) and are
    disabled by modern peers (CWE-327).

    **Example.**

        ssl.wrap_socket(sock, ssl_version=ssl.PROTOCOL_TLSv1)

    **Fix.** ``ssl.create_default_context()`` (TLS 1.2+), or ``PROTOCOL_TLS_CLIENT`` with
    ``minimum_version = ssl.TLSVersion.TLSv1_2``.
    """
    if node.attr in _WEAK_PROTOCOLS and isinstance(node.ctx, ast.Load):
        yield Hit(node, f"{ast.unparse(node)} selects a broken protocol version", 0.7)


_MIN_BITS = {"RSA": 2048, "DSA": 2048, "rsa": 2048, "dsa": 2048}


@rule("CWS326", cwe="CWE-326", title="Key too short", severity="medium",
      calls={"generate", "generate_private_key", "generate_parameters"})
def short_key(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An RSA or DSA key generated with fewer than 2048 bits.

    **What.** PyCryptodome ``RSA.generate(1024)``/``DSA.generate(1024)``, ``cryptography``'s
    ``rsa.generate_private_key(key_size=1024)``/``dsa.generate_private_key(1024)``, like
    Bandit's B505.

    **Why.** 1024-bit RSA/DSA is within reach of well-funded attackers (CWE-326).

    **Example.**

        key = RSA.generate(1024)

    **Fix.** 3072 bits (or at least 2048), or an elliptic curve key (Ed25519, P-256).
    """
    qual = ctx.qualname(call) or ""
    parts = qual.split(".")
    if len(parts) < 2 or parts[-2] not in _MIN_BITS:
        return
    size = kwarg(call, "key_size") or kwarg(call, "bits")
    if size is None:
        index = 1 if parts[-1] == "generate_private_key" and parts[-2] == "rsa" else 0
        size = arg(call, index)
    if isinstance(size, ast.Constant) and isinstance(size.value, int) and size.value < _MIN_BITS[parts[-2]]:
        yield Hit(call, f"{parts[-2].upper()} key of {size.value} bits (use at least "
                        f"{_MIN_BITS[parts[-2]]})", 0.8)


_JWT_MODULES = ("jwt.", "jose.jwt.", "jose.jws.")


@rule("CWS347", cwe="CWE-347", title="Token signature not verified", severity="high", calls={"decode"})
def unverified_jwt(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A JSON Web Token is decoded without checking its signature.

    **What.** PyJWT / python-jose ``jwt.decode(...)`` with ``verify=False`` (PyJWT 1),
    ``options={"verify_signature": False}`` (a dict written in the call), or ``algorithms`` that
    include ``"none"``.

    **Why.** Anyone can then write their own token: change the user id or the role in the
    claims and the application believes it (CWE-347).

    **Confidence.** 0.85. Reading a token's header to choose a key
    (``jwt.get_unverified_header``) is not flagged.

    **Example.**

        claims = jwt.decode(token, options={"verify_signature": False})

    **Fix.** ``jwt.decode(token, key, algorithms=["HS256"])``: always pass the key and an
    explicit list of acceptable algorithms.
    """
    qual = ctx.qualname(call) or ""
    if not qual.startswith(_JWT_MODULES):
        return
    why = None
    verify = kwarg(call, "verify")
    if is_const(verify, False):
        why = "verify=False"
    options = kwarg(call, "options")
    if isinstance(options, ast.Dict):
        for key, value in zip(options.keys, options.values):
            if is_const(key, "verify_signature") and is_const(value, False):
                why = 'options={"verify_signature": False}'
    algorithms = kwarg(call, "algorithms")
    if isinstance(algorithms, (ast.List, ast.Tuple, ast.Set)) and any(
            isinstance(e, ast.Constant) and str(e.value).lower() == "none" for e in algorithms.elts):
        why = 'algorithms include "none"'
    if why:
        yield Hit(call, f"{qual}() accepts tokens without checking their signature ({why})", 0.85)
