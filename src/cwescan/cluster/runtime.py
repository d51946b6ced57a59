"""Connecting to a Ray cluster, or starting one on this machine.

``--cluster`` takes:

- ``auto``: the cluster this machine already belongs to (``ray start`` ran here, or
  ``RAY_ADDRESS`` is set);
- ``ray://host:port``: a remote cluster through the Ray Client (e.g. a KubeRay head service);
- ``host:port``: a cluster's GCS address, from a machine that is part of the cluster;
- ``local``: a Ray runtime started for this scan alone, on this machine, stopped afterwards.

:class:`LocalCluster` starts a head node and worker nodes as separate processes on a loopback
address, as ``ray start`` does on real machines; tests and ``cwescan bench scan --cluster``
use it to run the same code over several nodes on one machine.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Ray replaces 127.0.0.1 by the machine's routable address (so that other machines can reach
# the node); any other address of the loopback range is kept as it is, which keeps every
# connection of a local cluster on this machine.
LOOPBACK = "127.0.0.2"
# A scan keeps files and results in flight, not data sets: a small store leaves memory to
# the model and the parsers.
DEFAULT_OBJECT_STORE_BYTES = 200 * 1024 * 1024
RAY_QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
# A LocalCluster requires Ray's token authentication, with a token of its own (see start()).
LOCAL_ENV = {**RAY_QUIET_ENV, "RAY_AUTH_MODE": "token"}


class ClusterError(RuntimeError):
    """The cluster could not be reached or started."""


def _package_root() -> str:
    """The folder holding the ``cwescan`` package, so that workers started here import the
    same code as the driver."""
    import cwescan

    return str(Path(cwescan.__file__).resolve().parents[1])


def _worker_env(token_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LOCAL_ENV)
    if token_path is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    paths = [_package_root(), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def connect(address: str, num_cpus: int | None = None,
            object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES) -> None:
    """Attach this process to the cluster named by ``address`` (see the module doc)."""
    import ray

    for name, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if ray.is_initialized():
        return
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_bytes,
                     logging_level=logging.WARNING,
                     include_dashboard=False, _node_ip_address=LOOPBACK, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": _worker_env()["PYTHONPATH"]}})
        elif address == "auto" or address.startswith("ray://"):
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            host = address.rsplit(":", 1)[0]
            kwargs = {"_node_ip_address": host} if host.startswith("127.") else {}
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot reach Ray cluster {address!r}: {e}") from e


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    """A head node and ``workers`` worker nodes on this machine, each its own ``ray start``
    process tree with ``cpus_per_node`` CPUs. ``stop()`` ends exactly the processes it
    started (by process id, whole trees), never other Ray processes on the machine."""

    workers: int = 1
    cpus_per_node: int = 1
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES
    host: str = LOOPBACK
    address: str = ""
    temp_dir: Path | None = None
    token_path: Path | None = None
    _nodes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, timeout: float = 90.0) -> LocalCluster:
        # short path: Ray's unix sockets live under it and their names are length-limited
        self.temp_dir = Path(tempfile.mkdtemp(prefix="cwray-", dir="/tmp"))
        port = _free_port(self.host)
        self.address = f"{self.host}:{port}"
        # a token of its own: nodes and drivers of this cluster share it, no other does
        self.token_path = self.temp_dir / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        try:
            self._nodes.append(self._ray_start(["--head", f"--port={port}", "--include-dashboard=false",
                                                f"--temp-dir={self.temp_dir}"], "head"))
            self._wait_for(1, timeout)
            for i in range(self.workers):
                self._nodes.append(self._ray_start([f"--address={self.address}"], f"worker{i}"))
            self._wait_for(1 + self.workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _ray_start(self, args: list[str], name: str) -> subprocess.Popen:
        ray_cli = Path(sys.executable).with_name("ray")
        cmd = [str(ray_cli) if ray_cli.exists() else "ray", "start", "--block",
               f"--node-ip-address={self.host}", f"--num-cpus={self.cpus_per_node}", "--num-gpus=0",
               f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats", *args]
        log = open(self.temp_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_worker_env(self.token_path),
                                start_new_session=True)

    def alive_nodes(self) -> int:
        probe = ("import ray,sys; ray.init(address=sys.argv[1], _node_ip_address=sys.argv[2], "
                 "log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))")
        try:
            out = subprocess.run([sys.executable, "-c", probe, self.address, self.host],
                                 capture_output=True, text=True, timeout=60,
                                 env=_worker_env(self.token_path))
        except subprocess.TimeoutExpired:
            return 0
        lines = out.stdout.strip().splitlines()
        return int(lines[-1]) if out.returncode == 0 and lines and lines[-1].isdigit() else 0

    def _wait_for(self, nodes: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self._nodes if p.poll() is not None]
            if dead:
                raise ClusterError(f"a Ray node exited at start; see the logs in {self.temp_dir}")
            if self.alive_nodes() >= nodes:
                return
            time.sleep(1.0)
        raise ClusterError(f"{nodes} Ray nodes did not come up within {timeout:.0f} s ({self.temp_dir})")

    def connect(self) -> None:
        """Attach this process to the cluster as its driver."""
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)})
        # Ray reads its settings from the environment once, when it is imported; read them
        # again, as ray.init itself does when it turns token authentication on.
        from ray._raylet import Config

        Config.initialize("")
        connect(self.address)

    def stop(self) -> None:
        """Kill every process of the nodes started here: the ``ray start`` processes and all
        their descendants (GCS, raylets, agents, workers), collected before any is killed."""
        import psutil

        procs: list[psutil.Process] = []
        for node in self._nodes:
            try:
                top = psutil.Process(node.pid)
                procs.extend([top, *top.children(recursive=True)])
            except psutil.NoSuchProcess:
                continue
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        for node in self._nodes:
            node.wait(timeout=10)
        self._nodes.clear()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start() if not self._nodes else self

    def __exit__(self, *exc) -> None:
        self.stop()
