"""Offline by proof: a full `cwescan scan` with the default detectors (the shipped SLM
included when it is installed) completes while every way out of the machine fails, and
nothing even tries one."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.detectors import default_detectors

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "vulnapp"


class NetworkAttempt(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Patch every socket entry point (and process spawning, a way around the patch) to
    record the attempt and fail."""
    attempts: list[str] = []

    def refuse(what):
        def fail(*args, **kwargs):
            attempts.append(f"{what}{args[1:] if what.startswith('socket.socket') else args}")
            raise NetworkAttempt(f"offline test: {what} refused")
        return fail

    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.socket.{name}"))
    # Binding to loopback is how urllib3 probes for IPv6 support at import; it reaches nothing.
    # A bind to any other address (a listening server) is refused like a connection.
    real_bind = socket.socket.bind

    def bind(self, address, *args):
        host = address[0] if isinstance(address, tuple) else address
        if host in ("127.0.0.1", "::1", "localhost"):
            return real_bind(self, address, *args)
        return refuse("socket.socket.bind")(self, address)

    monkeypatch.setattr(socket.socket, "bind", bind)
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
                 "gethostbyaddr", "getnameinfo", "create_server"):
        monkeypatch.setattr(socket, name, refuse(f"socket.{name}"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
    monkeypatch.setattr(os, "system", refuse("os.system"))
    return attempts


def test_patched_socket_really_refuses(no_network):
    """The fixture itself works: a real connection attempt is recorded and fails."""
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("example.org", 443), timeout=1)
    with pytest.raises(NetworkAttempt):
        socket.socket().connect(("127.0.0.1", 9))
    assert len(no_network) == 2


@pytest.mark.slow
def test_default_scan_completes_offline(no_network, tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    for name in ("db.py", "fetch.py", "serializers.py"):  # a few files keep the model stage short
        shutil.copy(DEMO / "vulnapp" / name, target / name)
    (target / "hub.py").write_text(
        "from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained('attacker/model', trust_remote_code=True)\n"
        "import urllib.request\nurllib.request.urlopen('http://example.org/' + input())\n")
    names, _ = default_detectors()
    # --no-cache: a warm result cache would skip loading the model this test is about
    result = CliRunner().invoke(app, ["scan", str(target), "--format", "json", "--jobs", "1",
                                      "--fail-on", "none", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert no_network == [], f"cwescan tried to reach the network: {no_network}"
    # the default set really ran (the shipped SLM too when it is installed)
    assert f"detectors: {', '.join(names)}" in result.stderr
    assert '"findings"' in result.stdout and '"CWE-89"' in result.stdout  # db.py's SQL injection


def test_import_sets_hub_offline():
    """Importing cwescan sets HF_HUB_OFFLINE (and friends) before anything loads transformers."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    code = ("import os, cwescan; print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'], "
            "os.environ['HF_HUB_DISABLE_TELEMETRY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]


def test_hub_lookup_fails_fast_after_import():
    """With the variables cwescan sets, huggingface_hub refuses to download instead of trying."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    code = (
        "import cwescan, socket\n"
        "def refuse(*a, **k): raise SystemExit('network attempted')\n"
        "socket.socket.connect = refuse; socket.getaddrinfo = refuse; socket.create_connection = refuse\n"
        "from huggingface_hub import hf_hub_download\n"
        "try:\n"
        "    hf_hub_download('HuggingFaceTB/SmolLM2-135M-Instruct', 'config.json', cache_dir='CACHE')\n"
        "except SystemExit: raise\n"
        "except Exception as e: print('refused:', type(e).__name__)\n"
    ).replace("CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "cwescan-offline-test-cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:"), out.stdout + out.stderr
