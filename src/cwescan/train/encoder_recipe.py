"""The encoder's training recipe (recipes/encoder-*.yaml): typed, with unknown keys and wrong
types refused."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cwescan.ml.encoder.model import EncoderShape
from cwescan.train.recipe_file import read_yaml


@dataclass
class CorpusSpec:
    roots: list[str] = field(default_factory=lambda: ["site-packages"])  # "site-packages" = this Python's
    max_mb: float = 400.0  # training text read, at most
    max_file_kb: int = 512  # larger .py files are generated tables more often than code
    holdout_percent: float = 2.0  # whole top-level packages held out for evaluation
    holdout_max_mb: float = 8.0
    tokenizer_sample_mb: float = 30.0


@dataclass
class PretrainSpec:
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    shape: EncoderShape = field(default_factory=EncoderShape)
    block_tokens: int = 512  # packed sequence length, <s> and </s> included
    batch_size: int = 256
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    max_steps: int = 100000
    train_seconds: float = 300.0  # wall-clock budget of the optimisation loop; the schedule follows it
    mask_prob: float = 0.15
    log_every: int = 25
    eval_every: int = 250
    eval_blocks: int = 256
    seed: int = 0


@dataclass
class FinetuneSpec:
    init: str | None = "runs/encoder-pretrain"  # pre-training output, or a classifier dir (its body is used); null: random body
    tokenizer: str | None = None  # tokenizer.json when init is null
    shape: EncoderShape = field(default_factory=EncoderShape)  # used when init is null
    data_dir: str | None = None  # records folder for load_part (default: $CWESCAN_DATA or ../shared/datasets)
    min_family_count: int = 20  # families with fewer vulnerable train records go to "other"
    window_tokens: int = 512
    overlap_tokens: int = 64
    epochs: int = 8
    batch_records: int = 16
    max_windows_per_record: int = 16  # training only: a sample of a huge record's windows per step
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    family_loss: float = 0.5
    line_loss: float = 0.5
    limit_records: int = 0  # 0: all; >0: a deterministic subset (smoke runs)
    seed: int = 0
    # realistic negatives (corpus of `cwescan data negatives`): presumed-safe units of real packages
    negatives_dir: str | None = None  # e.g. ${CWESCAN_NEGATIVES}
    negatives_ratio: float = 0.0  # negative units added per labelled training record
    max_validation_negatives: int | None = 2000
    # epoch selection: "f1" (best F1 on the labelled validation part) or "mix_auc" (mean of the
    # labelled validation AUC and the AUC of vulnerable validation records against validation negatives)
    select_on: str = "f1"

    def __post_init__(self) -> None:
        if self.select_on not in ("f1", "mix_auc"):
            raise ValueError(f"select_on must be 'f1' or 'mix_auc', got {self.select_on!r}")
        if self.select_on == "mix_auc" and not self.negatives_dir:
            raise ValueError("select_on: mix_auc needs negatives_dir")
        if self.negatives_ratio < 0:
            raise ValueError("negatives_ratio must be non-negative")


@dataclass
class Recipe:
    name: str
    stages: list[str]  # "pretrain", "finetune", in order
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    finetune: FinetuneSpec = field(default_factory=FinetuneSpec)
    notes: str = ""

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in ("pretrain", "finetune")]
        if not self.stages or bad:
            raise ValueError(f"stages must be a non-empty list of 'pretrain'/'finetune', got {self.stages}")


def _build(cls, data, where: str):
    """Construct dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        ftype = fields[name].type
        sub = {"CorpusSpec": CorpusSpec, "PretrainSpec": PretrainSpec, "FinetuneSpec": FinetuneSpec, "EncoderShape": EncoderShape}.get(ftype)
        if sub is not None:
            kwargs[name] = _build(sub, value, f"{where}.{name}")
            continue
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "str | None": value is None or isinstance(value, str),
            "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }.get(ftype, True)
        if not ok:
            raise ValueError(f"{where}.{name}: expected {ftype}, got {value!r}")
        kwargs[name] = float(value) if ftype == "float" else value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    return _build(Recipe, read_yaml(path, ValueError), path.name)
