"""Reading a training recipe file: the one YAML loader both trainers use."""

from __future__ import annotations

from pathlib import Path


def read_yaml(path: str | Path, error: type[Exception] = ValueError) -> object:
    """The parsed YAML of ``path``; a file that cannot be read or parsed raises ``error`` naming it."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise error(f"{path}: cannot read recipe: {e}") from None
