"""The cluster side of ``cwescan scan --cluster ADDRESS``: connect (or start a local Ray
runtime), hand the pipeline a :class:`RayExecutor`, and let go of everything afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cwescan.cluster.runtime import ClusterError, connect, disconnect


def check_address(address: str) -> str:
    """``address`` when it is one ``--cluster`` accepts, else a ValueError saying why."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return address
    host, _, port = address.rpartition(":")
    if host and port.isdigit():
        return address
    raise ValueError(f"{address!r} is not auto, local, ray://HOST:PORT or HOST:PORT")


@contextmanager
def cluster_executor(address: str, precision: str | None = None, slm_model: str | None = None,
                     device: str | None = None, slm_partner: str | None = None) -> Iterator:
    """A connected :class:`RayExecutor`; actors and the connection end with the block."""
    try:
        import ray  # noqa: F401 - only to tell a missing extra apart
    except ImportError as e:
        raise ClusterError("--cluster needs Ray: pip install 'cwescan[cluster]'") from e
    from cwescan.cluster.executor import RayExecutor

    connect(check_address(address))
    executor = RayExecutor(precision=precision, slm_model=slm_model, device=device, slm_partner=slm_partner)
    try:
        yield executor
    finally:
        executor.close()
        disconnect()
