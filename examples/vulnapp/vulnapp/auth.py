"""Accounts, passwords and tokens."""

import hashlib
import hmac
import os
import random
import secrets

API_KEY = "sk_live_51H8xQ2eZvKYlo2C9a8b7c6d5e4f3g2h1"
DB_PASSWORD = os.environ.get("NOTES_DB_PASSWORD", "")


def hash_password(password):
    return hashlib.md5(password.encode()).hexdigest()


def hash_password_safe(password, salt):
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1).hex()


def reset_token():
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))


def reset_token_safe():
    return secrets.token_urlsafe(32)


def check_token(given, expected):
    return hmac.compare_digest(given, expected)
