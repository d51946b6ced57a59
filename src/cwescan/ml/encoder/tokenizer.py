"""Byte-level BPE for Python source, trained with HF `tokenizers`.

Byte level means every string encodes (no <unk>), and nothing is normalised: case, indentation
and newlines survive, since they carry meaning in Python. Special ids follow RoBERTa's layout
(<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4) so a `RobertaConfig` fits without remapping."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
BOS, PAD, EOS, UNK, MASK = range(len(SPECIAL_TOKENS))


def new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
    # no add_prefix_space: a file's first token must look like the same token anywhere else
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int = 16384, min_frequency: int = 2) -> Tokenizer:
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_strings(texts), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"special token {t!r} got id {tok.token_to_id(t)}, expected {i}")
    return tok


def _strings(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t:
            yield t


def load_tokenizer(path: str | Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    if tok.token_to_id("<mask>") != MASK or tok.token_to_id("<pad>") != PAD:
        raise ValueError(f"{path}: not a cwescan encoder tokenizer (special token ids differ)")
    return tok


def encode_with_offsets(tok: Tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (no specials) and the character offset where each token starts."""
    enc = tok.encode(text, add_special_tokens=False)
    return list(enc.ids), [start for start, _ in enc.offsets]
