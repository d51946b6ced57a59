"""Fetching link previews for notes."""

from urllib.parse import urlparse

import requests
from flask import request

PREVIEW_HOSTS = {"example.com", "docs.python.org"}


def preview():
    url = request.args.get("url")
    return requests.get(url, timeout=5).text


def preview_safe():
    url = request.args.get("url", "")
    if urlparse(url).hostname not in PREVIEW_HOSTS:
        raise ValueError("host not allowed")
    return requests.get(url, timeout=5).text


def fetch_internal_status():
    return requests.get("https://status.internal.example/health", verify=False, timeout=5).json()


def fetch_internal_status_safe():
    return requests.get("https://status.internal.example/health", timeout=5).json()
