"""Tiny encoders for the encoder tests: a BPE tokenizer trained on a few hundred lines of
generated Python and a random 2-layer classifier, saved as a complete artifact."""

from __future__ import annotations

import random
from pathlib import Path

SAMPLE = [
    "import os\nimport subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n",
    "def query(db, name):\n    cur = db.cursor()\n    cur.execute('SELECT * FROM t WHERE n = %s', (name,))\n    return cur.fetchall()\n",
    "class Handler:\n    def get(self, path):\n        with open(os.path.join(BASE, path)) as f:\n            return f.read()\n",
    "for i in range(10):\n\tprint(i, 'ünïcode', \"x\" * i)  # comment\r\n",
]


def corpus(n: int = 60) -> list[str]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        body = "".join(rng.choice(SAMPLE) for _ in range(3))
        out.append(body.replace("run", f"run{i % 7}"))
    return out


def tiny_tokenizer(vocab_size: int = 400):
    from cwescan.ml.encoder.tokenizer import train_bpe

    return train_bpe(corpus(), vocab_size=vocab_size, min_frequency=1)


def tiny_artifact(directory: Path, window_tokens: int = 32, threshold: float = 0.5) -> Path:
    import torch

    from cwescan.ml.artifacts import write_card
    from cwescan.ml.encoder.model import ClassifierConfig, EncoderClassifier, EncoderShape

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    shape = EncoderShape(vocab_size=tok.get_vocab_size(), hidden=32, layers=2, heads=2, intermediate=64, max_positions=66)
    cfg = ClassifierConfig(shape=shape, families=["CWE-78", "CWE-89", "other"], window_tokens=window_tokens, overlap_tokens=8, threshold=threshold)
    model = EncoderClassifier(cfg)
    model.save(directory, torch.float16)
    tok.save(str(directory / "tokenizer.json"))
    write_card(directory, {"name": "tiny-test-encoder", "note": "random weights for tests"})
    return directory
