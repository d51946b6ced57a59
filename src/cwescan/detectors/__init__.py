"""Detector registry: name -> factory, and the default set. Factories import lazily so that
`cwescan scan --detector static` never imports torch.

Every caller that builds detectors by name (scan, eval, bench) goes through
:func:`create_detectors`, so they all get the same options: model detectors (subclasses of
:class:`~cwescan.detectors.base.ModelDetector`) get the measured default precision unless one
is given, and a device."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

from cwescan.detectors.base import Detector, ModelDetector

# name -> "module:callable"; the callable takes keyword options and returns a Detector
REGISTRY: dict[str, str] = {
    "static": "cwescan.detectors.static:StaticDetector",
    "bandit": "cwescan.detectors.bandit_detector:BanditDetector",
    "slm": "cwescan.detectors.slm:SLMDetector",
    "encoder": "cwescan.detectors.encoder:EncoderDetector",
}

# what the model detectors need beyond the core install: `pip install 'cwescan[models]'`
MODEL_EXTRA = ("torch", "transformers", "peft", "tokenizers")


def factory(name: str) -> Callable[..., Detector]:
    if name not in REGISTRY:
        raise KeyError(f"unknown detector {name!r}; choose from {', '.join(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attr)


def is_model(name: str) -> bool:
    """Whether detector ``name`` is a model detector (imports its module)."""
    made = factory(name)
    return isinstance(made, type) and issubclass(made, ModelDetector)


def create(name: str, **options) -> Detector:
    """Detector ``name`` with ``options``; an option it does not take is a TypeError naming it."""
    made = factory(name)
    try:
        return made(**options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"detector {name!r} has no option {str(e).rsplit(' ', 1)[-1]}") from None
        raise


def create_detectors(names: Sequence[str], precision: str | None = None, slm_model: str | None = None,
                     device: str | None = None, slm_partner: str | None = None) -> list[Detector]:
    """The detectors ``names``, as scan, eval and bench build them. ``slm_partner`` (a model
    detector name, "encoder"): the SLM decides as a pair with that model when its card holds a
    pair fitted for it (``cwescan.core.pair``), else alone."""
    from cwescan.ml.precision import default_precision

    def model_opts(name: str) -> dict:
        # no --precision: the benchmark's measured default (models/precision.json, else fp32)
        opts = {"precision": precision or default_precision(name, device=device)}
        return {**opts, "device": device} if device else opts

    out = []
    for name in names:
        opts: dict = model_opts(name) if is_model(name) else {}
        if name == "slm" and slm_model:
            opts["model"] = slm_model  # "qwen", "smollm2" or an adapter folder
        det = create(name, **opts)
        if name == "slm" and slm_partner:
            from cwescan.core.pair import PairUnavailable
            from cwescan.ml.artifacts import ArtifactError

            try:
                det.pair_with(create(slm_partner, **model_opts(slm_partner)))
            except (PairUnavailable, ArtifactError):  # no partner, or no pair fitted for it: the SLM alone
                pass
        out.append(det)
    return out


def missing_model_extra() -> list[str]:
    """Packages of the ``[models]`` extra that are not installed here."""
    return [m for m in MODEL_EXTRA if importlib.util.find_spec(m) is None]


def slm_available() -> tuple[bool, str]:
    """Whether the shipped SLM can run here, and if not, why."""
    artifact = Path(__file__).parents[1] / "models" / "slm"
    if not artifact.is_dir():
        return False, f"no shipped model at {artifact}"
    missing = missing_model_extra()
    if missing:
        return False, (f"the model libraries are not installed ({', '.join(missing)}); "
                       "pip install 'cwescan[models]'")
    return True, ""


def default_detectors() -> tuple[list[str], str]:
    """["static", "slm"] when the shipped SLM can run, else ["static"]; plus a note."""
    ok, why = slm_available()
    if ok:
        return ["static", "slm"], ""
    return ["static"], f"slm not used: {why}"


__all__ = ["Detector", "ModelDetector", "REGISTRY", "create", "create_detectors", "default_detectors",
           "factory", "is_model", "slm_available"]
