"""Choose the encoder's first-stage threshold: below it, a unit the rules did not flag is
cleared before the SLM sees it.

    cwescan train first-stage --encoder-scores data/negatives/scores/encoder.json.gz \\
        --slm-scores data/negatives/scores/slm.json.gz --card src/cwescan/models/encoder --write

Both score files come from ``cwescan eval-mix`` (the encoder's with ``--detector encoder``) on
the same labelled parts and negatives corpus. Validation decides, test only measures:

- the threshold is the highest encoder score below which at most ``RECALL_LOSS`` of the
  vulnerable validation records fall (all of them, not only those the SLM flags: the SLM's own
  flags are too few on validation to bound the loss on their own);
- what it costs: the vulnerable records the SLM would report on its own (score at or above its
  model-only threshold, no rule finding in the record) that the first stage clears, in points
  of recall, on both parts;
- what it saves: the share of the corpus' realistic negatives it clears (the units a scan of
  real code reviews).
"""

from __future__ import annotations

from pathlib import Path

RECALL_LOSS = 0.02  # at most this share of vulnerable validation records is cleared


def threshold_for_loss(vulnerable: list[float], loss: float = RECALL_LOSS) -> float:
    """The highest threshold t with #(score < t) <= loss x len(vulnerable): the lowest score
    that must stay reviewed once the allowed share of the lowest scores is cleared."""
    ranked = sorted(vulnerable)
    allowed = int(loss * len(ranked))
    return ranked[allowed] if ranked else 0.0


def _rule_free(records) -> dict[str, bool]:
    """Record id -> the static rules find nothing in it (only such units meet the first stage)."""
    from cwescan.core.units import parse_source
    from cwescan.detectors.static import StaticDetector

    static = StaticDetector()
    return {r.id: not static.detect(parse_source(f"{r.id}.py", r.code).units) for r in records}


def analyse(encoder_scores: dict, slm_scores: dict, model_only: float, loss: float = RECALL_LOSS) -> dict:
    from cwescan.data.split import load_part

    parts = {}
    for part in ("validation", "test"):
        records = load_part(part)
        enc = {r["id"]: r["score"] for r in encoder_scores["labelled"][part]}
        slm = {r["id"]: r["score"] for r in slm_scores["labelled"][part]}
        parts[part] = (records, enc, slm, [r["score"] for r in encoder_scores["negatives"][part]])
    records, enc, _, _ = parts["validation"]
    threshold = threshold_for_loss([enc[r.id] for r in records if r.vulnerable], loss)
    out = {"threshold": threshold, "recall_loss_allowed": loss, "model_only_threshold_of_slm": model_only}
    for part, (records, enc, slm, negatives) in parts.items():
        free = _rule_free(records)
        vulnerable = [r for r in records if r.vulnerable]
        slm_alone = [r for r in vulnerable if slm[r.id] >= model_only and free[r.id]]
        lost = [r.id for r in slm_alone if enc[r.id] < threshold]
        out[part] = {
            "vulnerable_records": len(vulnerable),
            "vulnerable_below": sum(enc[r.id] < threshold for r in vulnerable) / len(vulnerable),
            "slm_only_flags": len(slm_alone),
            "slm_only_flags_cleared": len(lost),
            "model_stage_recall_loss_points": 100 * len(lost) / len(vulnerable),
            "negatives": len(negatives),
            "negatives_cleared": sum(s < threshold for s in negatives) / len(negatives),
        }
    return out


def run(encoder_scores: Path, slm_scores: Path, card_dir: Path | None, slm_card_dir: Path, write: bool = False,
        loss: float = RECALL_LOSS) -> dict:
    from cwescan.ml.artifacts import read_card, write_card
    from cwescan.train.calibrate import read_scores

    model_only = read_card(slm_card_dir)["policy"]["model_only"]
    result = analyse(read_scores(encoder_scores), read_scores(slm_scores), model_only, loss)
    for part in ("validation", "test"):
        p = result[part]
        print(f"{part}: threshold {result['threshold']:.5f} clears {p['negatives_cleared']:.1%} of {p['negatives']} "
              f"realistic negatives and {p['vulnerable_below']:.1%} of {p['vulnerable_records']} vulnerable records; "
              f"SLM-only flags cleared {p['slm_only_flags_cleared']} of {p['slm_only_flags']} "
              f"({p['model_stage_recall_loss_points']:.2f} points of recall)")
    if write and card_dir:
        card = read_card(card_dir)
        card["first_stage"] = {
            **result,
            "chosen": f"cwescan train first-stage: the highest encoder score below which at most {loss:.0%} of the "
                      "vulnerable validation records fall; test measures (scores: "
                      f"{Path(encoder_scores).name}, SLM {Path(slm_scores).name})",
        }
        write_card(card_dir, card)
    return result
