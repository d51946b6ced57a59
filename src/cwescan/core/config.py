"""Settings from ``[tool.cwescan]`` in pyproject.toml.

The file is looked for upward from the scan root, stopping at the enclosing git work tree. A
pyproject.toml without the section, or no pyproject.toml at all, gives the defaults. Keys may be
spelled with dashes or underscores. Command-line flags override everything here.

    [tool.cwescan]
    detectors = ["static", "slm"]
    exclude = ["tests/fixtures/**"]
    fail-on = "high"            # low | medium | high | critical | none
    min-confidence = 0.5
    max-file-size = 5000000     # bytes; "5MB" also works
    file-timeout = 20           # seconds of static analysis per file
    precision = "int8"          # model detectors: fp32 | bf16 | int8 | int4
    slm-model = "qwen"          # smollm2 (default) | qwen | an adapter folder
    format = "text"             # text | json | jsonl | sarif
    baseline = ".cwescan-baseline.json"
    tests = "report"            # test code: report (one severity lower, never fails --fail-on)
                                #   | normal (like any code) | skip (not scanned)
    test-paths = ["tests/", "test_*.py"]  # what is test code (default: cwescan.core.testcode)
    cluster = "auto"            # scan on a Ray cluster: auto | local | ray://host:port | host:port
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cwescan.core.findings import SEVERITIES
from cwescan.core.precisions import SCAN_PRECISIONS
from cwescan.core.testcode import DEFAULT_TEST_MODE, DEFAULT_TEST_PATHS, TEST_MODES

DEFAULT_MAX_FILE_SIZE = 5_000_000  # bytes: larger files are skipped (--max-file-size)
FORMATS = ("text", "json", "jsonl", "sarif")
FAIL_ON = (*SEVERITIES, "none")


# Findings below this confidence are not shown unless --min-confidence asks for them. Rule
# findings start well above it (a source-to-sink flow 0.8+, parameter-only evidence 0.55,
# Bandit's LOW 0.4); a rule finding a model confidently calls safe is lowered below it.
DEFAULT_MIN_CONFIDENCE = 0.3


class ConfigError(ValueError):
    """A setting has the wrong type or value."""


@dataclass
class Config:
    detectors: list[str] | None = None  # None: pick the default set
    exclude: list[str] = field(default_factory=list)
    fail_on: str = "high"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    file_timeout: float = 20.0
    precision: str | None = None  # None: each model detector's own default
    slm_model: str | None = None  # None: the default adapter (SmolLM2); "qwen" or an adapter folder
    format: str = "text"
    baseline: Path | None = None
    tests: str = DEFAULT_TEST_MODE  # what to do with test code: report | normal | skip
    test_paths: list[str] = field(default_factory=lambda: list(DEFAULT_TEST_PATHS))  # what is test code
    cluster: str | None = None  # Ray cluster address; None: scan on this machine
    source: Path | None = None  # the pyproject.toml these came from


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.cwescan] section at or above ``start``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                raise ConfigError(f"{candidate}: {e}") from e
            if "cwescan" in data.get("tool", {}):
                return candidate
        if (folder / ".git").exists():
            break
    return None


def load(start: Path) -> Config:
    path = find_pyproject(start)
    if path is None:
        return Config()
    section = tomllib.loads(path.read_text(encoding="utf-8"))["tool"]["cwescan"]
    return from_mapping(section, path)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30}


def parse_size(value: int | str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"max-file-size: not a size: {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value))
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise ConfigError(f"max-file-size: not a size: {value!r} (e.g. 5000000 or '5MB')")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def from_mapping(section: dict, source: Path | None = None) -> Config:
    cfg = Config(source=source)
    where = f"{source}: [tool.cwescan]" if source else "[tool.cwescan]"
    for raw_key, value in section.items():
        key = raw_key.replace("_", "-")
        try:
            _apply(cfg, key, value, source)
        except ConfigError as e:
            raise ConfigError(f"{where} {e}") from None
    return cfg


def _apply(cfg: Config, key: str, value, source: Path | None) -> None:
    def string_list() -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)

    def choice(options: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
        return value.lower()

    if key == "detectors":
        cfg.detectors = string_list()
    elif key == "exclude":
        cfg.exclude = string_list()
    elif key == "tests":
        cfg.tests = choice(TEST_MODES)
    elif key == "test-paths":
        cfg.test_paths = string_list()
    elif key == "fail-on":
        cfg.fail_on = choice(FAIL_ON)
    elif key == "min-confidence":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{key}: expected a number between 0 and 1, got {value!r}")
        cfg.min_confidence = float(value)
    elif key == "max-file-size":
        cfg.max_file_size = parse_size(value)
    elif key == "file-timeout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{key}: expected seconds >= 0, got {value!r}")
        cfg.file_timeout = float(value)
    elif key == "precision":
        cfg.precision = choice(SCAN_PRECISIONS)
    elif key == "slm-model":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected smollm2, qwen or an adapter folder, got {value!r}")
        known = ("smollm2", "qwen")
        cfg.slm_model = value if value in known else str((source.parent if source else Path.cwd()) / value)
    elif key == "format":
        cfg.format = choice(FORMATS)
    elif key == "cluster":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected auto, local, ray://host:port or host:port, got {value!r}")
        cfg.cluster = value
    elif key == "baseline":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        base = source.parent if source else Path.cwd()
        cfg.baseline = base / value
    else:
        raise ConfigError(f"unknown key {key!r}")
