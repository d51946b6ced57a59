"""The encoder: a RoBERTa (CodeBERTa-small style) body with three heads.

- binary head on <s>: logit of P(window is vulnerable);
- family head on <s>: the CWE family (frequent families of the training data + "other");
- line head on every token: logit that the token lies on a vulnerable line (localisation).

Weights are stored as safetensors shards (each <= 15 MiB) next to a config.json; loading builds
the modules from the config and copies tensors in: nothing is unpickled."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import RobertaConfig, RobertaModel

from cwescan.ml.encoder.tokenizer import BOS, EOS, PAD

SHARD_BYTES = 15 * 1024 * 1024
OTHER = "other"


@dataclass
class EncoderShape:
    """Size of the RoBERTa body. The default is the shipped size (about 17 M parameters,
    34 MB in fp16): CodeBERTa-small's 6 layers at a narrower width."""

    vocab_size: int = 16384
    hidden: int = 384
    layers: int = 6
    heads: int = 6
    intermediate: int = 1536
    max_positions: int = 514  # 512 tokens + RoBERTa's padding offset

    def roberta_config(self) -> RobertaConfig:
        return RobertaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=self.max_positions,
            type_vocab_size=1,
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=EOS,
        )

    @property
    def max_tokens(self) -> int:
        return self.max_positions - 2


@dataclass
class ClassifierConfig:
    shape: EncoderShape = field(default_factory=EncoderShape)
    families: list[str] = field(default_factory=lambda: [OTHER])  # family head classes, "other" last
    window_tokens: int = 512
    overlap_tokens: int = 64
    threshold: float = 0.5  # P(vulnerable) at or above which a unit is reported

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        d = dict(d)
        d["shape"] = EncoderShape(**d.get("shape", {}))
        return cls(**d)


class EncoderClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        h = config.shape.hidden
        rc = config.shape.roberta_config()
        rc._attn_implementation = "sdpa"
        self.encoder = RobertaModel(rc, add_pooling_layer=False)
        self.dropout = nn.Dropout(0.1)
        self.binary = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
        self.family = nn.Linear(h, len(config.families))
        self.line = nn.Linear(h, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = self.dropout(hidden)
        cls = hidden[:, 0]
        return {
            "binary": self.binary(cls).squeeze(-1),
            "family": self.family(cls),
            "line": self.line(hidden).squeeze(-1),
        }

    # --- storage -------------------------------------------------------------------------
    def save(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> list[str]:
        """float16, float32, or int8 (row-wise int8 matrices, see save_sharded)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(self.config.to_json())
        return save_sharded(self.state_dict(), directory, "model", dtype)

    @classmethod
    def load(cls, directory: str | Path) -> EncoderClassifier:
        directory = Path(directory)
        config = ClassifierConfig.from_dict(json.loads((directory / "config.json").read_text()))
        model = cls(config)
        state = load_sharded(directory, "model")
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model.eval()

    def load_encoder(self, state: dict[str, torch.Tensor]) -> None:
        """Copy pre-trained body weights (keys as saved by pre-training: no prefix) in."""
        missing, unexpected = self.encoder.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            raise ValueError(f"pre-trained weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")


SCALE_SUFFIX = ".int8_row_scale"


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row: t ~= q * scale[:, None]."""
    scale = t.float().abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(t.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.to(torch.float16)


def save_sharded(state: dict[str, torch.Tensor], directory: Path, stem: str, dtype: torch.dtype) -> list[str]:
    """Write ``state`` as ``<stem>-00001.safetensors``... shards of at most SHARD_BYTES each
    (a tensor larger than that gets a shard of its own).

    ``dtype=torch.int8`` stores every matrix as int8 with a float16 scale per row (weight-only
    storage compression, half the size of float16; ``load_sharded`` restores floats) and the
    vectors (biases, LayerNorm) as float16."""
    for old in directory.glob(f"{stem}-*.safetensors"):
        old.unlink()
    tensors: dict[str, torch.Tensor] = {}
    for name in sorted(state):
        t = state[name].detach().to("cpu")
        if dtype == torch.int8 and t.is_floating_point() and t.ndim == 2:
            tensors[name], tensors[name + SCALE_SUFFIX] = quantize_rows(t)
        elif t.is_floating_point():
            tensors[name] = t.to(torch.float16 if dtype == torch.int8 else dtype)
        else:
            tensors[name] = t
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += n
    names = []
    for i, shard in enumerate(shards, 1):
        name = f"{stem}-{i:05d}.safetensors"
        save_file(shard, str(directory / name))
        names.append(name)
    return names


def load_sharded(directory: str | Path, stem: str) -> dict[str, torch.Tensor]:
    files = sorted(Path(directory).glob(f"{stem}-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no {stem}-*.safetensors files")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    for name in [k for k in state if k.endswith(SCALE_SUFFIX)]:
        base = name[: -len(SCALE_SUFFIX)]
        state[base] = state[base].float() * state.pop(name).float()[:, None]
    return state
