"""Rule modules, one per kind of weakness; importing this package registers every rule."""

from cwescan.detectors.static.rules import (  # noqa: F401
    cookies,
    crypto,
    debug,
    deserialization,
    files,
    injection,
    orm,
    resources,
    secrets,
    transport,
    web,
)
