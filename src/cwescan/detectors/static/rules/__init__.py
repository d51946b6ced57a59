"""Rule modules, one per kind of weakness; importing this package registers every rule."""

from cwescan.detectors.static.rules import (  # noqa: F401
    cookies,
    crypto,
    csrf,
    debug,
    deserialization,
    exposure,
    files,
    injection,
    orm,
    remote,
    resources,
    secrets,
    transport,
    web,
)
