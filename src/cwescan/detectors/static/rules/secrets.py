"""Hard-coded credentials (CWE-798).

Our own rather than Bandit's B105/B106: Bandit flags any string assigned to a password-like
name, including ``""``, ``"changeme"``, ``"<password>"`` and prompts such as ``"Password: "``;
these rules skip empty values, placeholders, prompts, templates and names that are about a
secret rather than being one (``PASSWORD_FIELD``, ``token_url``), and also catch well-known token
formats (AWS, GitHub, Slack, Stripe, private keys) whatever the variable is called.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.detectors.static.context import Context
from cwescan.detectors.static.registry import Hit, rule

# what a name holding a credential says; "token" alone also names lexer, NLP and pagination
# tokens, so a name that says only that needs a value shaped like a credential (_TOKEN_SHAPE)
_CREDENTIAL_WORDS = (r"passw(or)?d|passwd|passphrase|(^|_)pwd$|(^|_)pass$|secret|api_?key|apikey|access_?key|"
                     r"private_?key|signing_?key|encryption_?key|auth_?key|credentials?$|client_secret")
_SECRET_NAME = re.compile(rf"(?i)({_CREDENTIAL_WORDS}|token)")
_NOT_ONLY_TOKEN = re.compile(rf"(?i)({_CREDENTIAL_WORDS})")
_TOKEN_SHAPE = re.compile(r"^(?=.*\d)[^\s<>\[\]|{}]{12,}$")
_ABOUT_A_SECRET = re.compile(r"(?i)(_|^)(field|label|name|names|url|uri|file|path|dir|type|types|len|"
                             r"length|prompt|header|param|regex|pattern|re|env|var|key_name|endpoint|"
                             r"format|fmt|template|policy|hint|help|msg|message|error|required|"
                             r"expires?|expiry|ttl|timeout|count|max|min|id|column|attr|kind|mode|"
                             r"char|chars|hash|hasher|algorithm|algo|validator|reset|changed|check|"
                             r"prefix|suffix|sep|separator|placeholder|widget|style|class|cls)$")
# last words of a camelCase or dotted name about a secret (``AccessKeyId``, ``SecretArn``,
# ``HttpTokens``): the snake_case forms are in _ABOUT_A_SECRET
_ABOUT_WORDS = frozenset({"id", "ids", "arn", "name", "names", "type", "types", "url", "uri", "file", "path",
                          "field", "header", "param", "env", "var", "len", "length", "count", "kind", "mode",
                          "tokens", "keys", "secrets", "passwords", "prefix", "suffix", "policy", "format"})
# words that say a label names a credential rather than holding one (``"AWS_SESSION_TOKEN"``)
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "secret", "token", "key", "apikey",
                           "credential", "credentials", "auth", "authorization"})
_PLACEHOLDER = re.compile(r"(?i)^(none|null|nil|true|false|changeme|change_?me|password|passwd|secret|"
                          r"token|your[_\- ].*|my[_\- ].*|example.*|dummy|placeholder|todo|fixme|tbd|"
                          r"redacted|hidden|\**|x+|\.+|-+|test|foo|bar|abc|123|1234|12345|"
                          r"not[_\- ]?set|unset|empty|default|required|\*\*\*.*)$")
_KNOWN_TOKENS = re.compile(r"(AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,}|"
                           r"sk_live_[A-Za-z0-9]{16,}|-----BEGIN( RSA| EC| DSA| OPENSSH)? PRIVATE KEY-----|"
                           r"AIza[0-9A-Za-z_\-]{35})")


_TEMPLATE_ONLY = re.compile(r"^(x+|\**|\.+|-+|<.*>|\$\{.*\}|\{\{.*\}\})$", re.I)


def _secret_value(value: ast.AST, used: bool = False) -> str | None:
    """The literal if it could be a real secret, else None. ``used``: the literal is given
    to a call or compared with, so even a word like "password" is a working credential there;
    only empty values and templates are skipped."""
    if not (isinstance(value, ast.Constant) and isinstance(value.value, (str, bytes))):
        return None
    text = value.value.decode("latin-1") if isinstance(value.value, bytes) else value.value
    stripped = text.strip()
    if used:
        if not stripped or _TEMPLATE_ONLY.match(stripped) or any(c in stripped for c in " \n\t"):
            return None
    elif len(stripped) < 4 or _PLACEHOLDER.match(stripped):
        return None
    if any(c in stripped for c in " \n\t") and not _KNOWN_TOKENS.search(stripped):
        return None  # prompts, messages, SQL: not a credential
    if stripped.startswith(("<", "${", "{{", "%(", "$")) or "{" in stripped and "}" in stripped:
        return None  # template or placeholder
    if stripped.startswith(("http://", "https://", "/", "./")):
        return None
    return stripped


def _confidence(name: str, text: str) -> float:
    if _KNOWN_TOKENS.search(text):
        return 0.9
    mixed = sum([any(c.isdigit() for c in text), any(c.isalpha() for c in text),
                 any(not c.isalnum() for c in text)])
    return 0.8 if len(text) >= 8 and mixed >= 2 else 0.55


def _suspicious(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    if "::" in last or not _SECRET_NAME.search(last) or _ABOUT_A_SECRET.search(last):
        return False  # ``::``: a type name (``AWS::ApiGateway::ApiKey``), not a field
    words = _words(last)
    return not (words and words[-1] in _ABOUT_WORDS)


def _credential(name: str, text: str) -> bool:
    """``text`` under ``name`` may be a credential: the name says so, a name saying only
    "token" (``next_token_``, ``IMAGE_TOKEN``, ``pad_token``) holds a value shaped like one, and
    the value does not merely name a credential (``_label``)."""
    if not _suspicious(name):
        return False
    shaped = bool(_NOT_ONLY_TOKEN.search(name.rsplit(".", 1)[-1])) or bool(_TOKEN_SHAPE.match(text))
    return shaped and not _label(text, name)


def _words(name: str) -> list[str]:
    """The lower-case words of a snake_case, kebab-case, camelCase or UPPER_CASE name."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", name)
            for w in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", part)]


def _label(text: str, name: str) -> bool:
    """``text`` names a credential instead of holding one: an environment variable or constant
    name (``"AWS_SESSION_TOKEN"``), a field name (``"allowCredentials"``, ``"aws_access_key_id"``),
    a header (``"Access-Control-Allow-Credentials"``),
    or the variable's own name in other words (``API_KEY = "api_key"``)."""
    words = _words(text)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.:-]*", text) or not set(words) & _SECRET_WORDS:
        return False
    squeeze = re.sub(r"[^a-z0-9]", "", text.lower())
    return (re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", text) is not None  # AWS_SESSION_TOKEN
            or re.fullmatch(r"[a-zA-Z][a-z]*([A-Z][a-z]+)+", text) is not None  # allowCredentials
            or re.fullmatch(r"[A-Z][a-z]*(-[A-Z][a-z]*)+", text) is not None  # an HTTP header's name
            or words[-1] in _ABOUT_WORDS
            or len(words) > 1 and squeeze == re.sub(r"[^a-z0-9]", "", name.rsplit(".", 1)[-1].lower()))


def _assign_pairs(node: ast.AST):
    if isinstance(node, ast.Assign):
        for t in node.targets:
            yield t, node.value
    else:
        yield node.target, node.value


@rule("CWS798", cwe="CWE-798", title="Hard-coded credential", severity="high",
      node=(ast.Assign, ast.AnnAssign))
def hardcoded_secret(node: ast.Assign, ctx: Context) -> Iterator[Hit]:
    """A password, secret, token or key written as a string literal in the code.

    **What.** A non-empty string literal assigned to a name, attribute or key whose name says it
    is a credential (``password``, ``secret``, ``token``, ``api_key``, ``private_key``...), or a
    string in a well-known token format (AWS ``AKIA...``, GitHub ``ghp_...``, Slack ``xox...``,
    Stripe ``sk_live_...``, a PEM private key) whatever the name. Empty values, placeholders
    (``"changeme"``, ``"<password>"``, ``"xxx"``), prompts and templates are skipped, and so are
    names about a secret rather than holding one (``PASSWORD_FIELD``, ``token_url``,
    ``AccessKeyId``, ``AWS::ApiGateway::ApiKey``) and values that name one (an environment
    variable ``"AWS_SESSION_TOKEN"``, a field ``"allowCredentials"``). A name that says only
    "token" also names lexer, language-model and pagination tokens (``next_token``,
    ``IMAGE_TOKEN``, ``pad_token``): it needs a value shaped like a credential (12 or more
    characters with a digit, no markup).

    **Why.** Everyone with the code (or the package, or the repository history) has the
    credential, and it cannot be rotated without a release (CWE-798/259).

    **Example.**

        API_KEY = "sk_live_51H8xQ2eZvKYlo2C9a8b7c6d5e4f3g2h1"

    **Fix.** Read it at run time: ``os.environ["API_KEY"]``, a secrets manager, a config file
    outside the repository.
    """
    for target, value in _assign_pairs(node):
        if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
            name = str(target.slice.value)
        elif isinstance(target, (ast.Name, ast.Attribute)):
            name = ast.unparse(target)
        else:
            continue
        text = _secret_value(value)
        if text is None:
            continue
        if _KNOWN_TOKENS.search(text) or _credential(name, text):
            yield Hit(node, f"`{name}` holds a hard-coded credential", _confidence(name, text))
            return


@rule("CWS798B", cwe="CWE-798", title="Hard-coded credential passed as an argument", severity="high",
      node=(ast.keyword, ast.Dict))
def hardcoded_secret_argument(node: ast.AST, ctx: Context) -> Iterator[Hit]:
    """A credential literal passed as ``password=``/``token=``... or stored under such a dict key.

    **What.** ``connect(user="app", password="s3cr3t!")``, ``{"api_key": "abcd1234..."}``, with
    the same name and value filters as CWS798.

    **Why.** Same as CWS798: the credential ships with the code (CWE-798).

    **Example.**

        db = psycopg2.connect(host=HOST, user="app", password="Tr0ub4dor&3")

    **Fix.** Pass a value read from the environment or a secrets store.
    """
    if isinstance(node, ast.keyword):
        pairs = [(node.arg, node.value)] if node.arg else []
    else:
        pairs = [(k.value, v) for k, v in zip(node.keys, node.values)
                 if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    for name, value in pairs:
        text = _secret_value(value, used=isinstance(node, ast.keyword))
        if text is not None and (_KNOWN_TOKENS.search(text) or _credential(name, text)):
            # a placeholder word ("password", "test") passed to a call: real but likely a demo value
            conf = 0.4 if _PLACEHOLDER.match(text) else _confidence(name, text)
            yield Hit(value, f"`{name}` is given a hard-coded credential", conf)


@rule("CWS798C", cwe="CWE-798", title="Credential checked against a literal", severity="high",
      node=ast.Compare)
def hardcoded_secret_check(node: ast.Compare, ctx: Context) -> Iterator[Hit]:
    """A password or token compared with a string literal.

    **What.** ``if password == "admin":``, ``token != "s3cr3t"`` where one side's name says it
    is a credential and the other is a non-empty literal.

    **Why.** The accepted credential is in the code: anyone who reads it logs in (CWE-798/259).

    **Example.**

        if password == "admin":
            return True

    **Fix.** Compare a salted hash from storage with ``hmac.compare_digest``.
    """
    if len(node.ops) != 1 or not isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
        return
    left, right = node.left, node.comparators[0]
    for named, literal in ((left, right), (right, left)):
        if not isinstance(named, (ast.Name, ast.Attribute)):
            continue
        name = ast.unparse(named)
        text = _secret_value(literal, used=True)
        if text is not None and text.lower() not in ("none", "null", "true", "false") and _credential(name, text):
            yield Hit(node, f"`{name}` is checked against a hard-coded value", _confidence("", text))
            return
