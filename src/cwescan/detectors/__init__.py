"""Detector registry: name -> factory. Factories import lazily so that `cwescan scan
--detector static` never imports torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cwescan.detectors.base import Detector

# name -> "module:callable"; the callable takes keyword options and returns a Detector
REGISTRY: dict[str, str] = {
    "static": "cwescan.detectors.static:StaticDetector",
    "bandit": "cwescan.detectors.bandit_detector:BanditDetector",
    "slm": "cwescan.detectors.slm:SLMDetector",
    "encoder": "cwescan.detectors.encoder:EncoderDetector",
}


def create(name: str, **options) -> Detector:
    if name not in REGISTRY:
        raise KeyError(f"unknown detector {name!r}; choose from {', '.join(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    factory: Callable[..., Detector] = getattr(importlib.import_module(module), attr)
    return factory(**options)


__all__ = ["Detector", "REGISTRY", "create"]
