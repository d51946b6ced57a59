"""Fit the SLM's pair with a partner model (the encoder): the weight of the two log-odds and the
pair's decision thresholds, on the validation mix at realistic prevalence; measured on the test
mix and, as users run it, on the test part of the split (``cwescan.core.pair`` says what a
pair is).

    cwescan train pair --scores data/negatives/scores/slm.json.gz \\
        --partner-scores data/negatives/scores/encoder.json.gz \\
        --negatives-manifest data/negatives/MANIFEST.json --card src/cwescan/models/slm \\
        --partner-card src/cwescan/models/encoder --repeat-scores ...slm-repeat.json.gz \\
        --partner-repeat-scores ...encoder-repeat.json.gz --write

Validation decides everything: the weight is the one whose pair separates vulnerable validation
records from realistic validation negatives best (ROC-AUC; near-equal weights resolved towards
the cheaper scan, see ``AUC_TIE``); the thresholds then come from
``cwescan.train.calibrate.analyse`` on the pair's scores. A second pair (both models' second
training runs) is fitted the same way, so the card says how far the recipe reproduces.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import math

from cwescan.core.pair import SETTLED_KEPT, SETTLED_SAFE, Pairing, fuse, gate, model_files
from cwescan.evaluate import prevalence as PV
from cwescan.evaluate.prevalence import SAFE_RECALL_LOSS
from cwescan.train import calibrate as C

WEIGHTS = tuple(k / 10 for k in range(1, 10))  # of the SLM's log-odds; 0 and 1 are the models alone
# The pair's confident "safe" has the budget of a model alone: at most 5 % of the vulnerable
# validation records score under it. On scores of dedented units that hides 1 of the 119 rule
# true positives of validation (0.8 %). (Fitted on scores of indented snippets, 5 % had hidden
# three times as many rule true positives on test as 2 %, and the pair used 2 %; on today's scores
# 2 % lowered 5 of 23 rule findings on 6 held-out packages, docs/journal/2026-12-01-dedent-refit.md.)
SAFE_LOSS = SAFE_RECALL_LOSS
# The gate assumes the SLM says at most this quantile of its scores on vulnerable validation
# records: a unit whose partner score keeps the pair under the model-only threshold even then is
# not read by the SLM (it could only make a finding there with an answer it gives 1 % of real
# weaknesses).
GATE_QUANTILE = 0.99
# A settled second opinion assumes the SLM says at least this quantile of its scores on realistic
# validation negatives: where the partner's score keeps the pair above its confident "safe" even
# then, the SLM is not read for a unit's rule findings (it could lower one only with an answer it
# gives 1 % of ordinary code).
FLOOR_QUANTILE = 0.01
# The other way round, a unit's rule findings are lowered without the SLM when the pair is at or
# under its confident "safe" even if the SLM says this quantile of its scores on realistic
# validation negatives: only an answer it gives 5 % of ordinary code could keep them in view.
# (At 0.90 the same held out 2 rule true positives of validation and 5 of test; at 0.95, 0 and 1;
# on the 1,000-file benchmark tree 0.95 settles 43 of 296 units with a rule finding, 0.99 none.)
ORDINARY_QUANTILE = 0.95
# Weights whose validation-mix ROC-AUC is within this of the best are taken as equal: two training
# runs of one recipe differ by more (the encoder's validation-mix AUC 0.924 and 0.928 on seeds 0
# and 1). Among equals the lowest SLM weight wins: the partner then decides more of the pair's
# score, its gate is higher, and the scan's first stage spares the SLM more units for the same
# ranking (docs/journal/2026-12-01-dedent-refit.md: 0.4 instead of 0.6, AUC 0.9473 vs 0.9489,
# its gate clearing 89 % instead of none of the validation negatives).
AUC_TIE = 0.002


def fuse_scores(slm: dict, partner: dict, weight: float) -> dict:
    """The pair's score file: the SLM's rows (its CWE and line answers) with the pair's score,
    over the records and units both files scored."""
    out = {"labelled": {}, "negatives": {}}
    for section in out:
        for part, rows in slm[section].items():
            theirs = {r["id"]: r["score"] for r in partner[section].get(part, [])}
            out[section][part] = [{**r, "score": fuse(r["score"], theirs[r["id"]], weight)}
                                  for r in rows if r["id"] in theirs]
    return out


def validation_auc(scores: dict) -> float:
    pos, neg = C.split_scores(scores, "validation")
    return C.auc(pos, neg)


def choose_weight(slm: dict, partner: dict) -> tuple[float, dict[str, float]]:
    """The weight of the SLM's log-odds, and the validation-mix ROC-AUC of each weight: among the
    weights within ``AUC_TIE`` of the best AUC, the lowest (see ``AUC_TIE``)."""
    aucs = {f"{w:.1f}": validation_auc(fuse_scores(slm, partner, w)) for w in WEIGHTS}
    best = max(aucs.values())
    return min(w for w in WEIGHTS if aucs[f"{w:.1f}"] >= best - AUC_TIE), aucs


def slm_ceiling(slm: dict) -> float:
    """The SLM's ``GATE_QUANTILE`` quantile of its scores on vulnerable validation records."""
    vulnerable = sorted(r["score"] for r in slm["labelled"]["validation"] if r["vulnerable"])
    return vulnerable[max(0, math.ceil(GATE_QUANTILE * len(vulnerable)) - 1)]


def gate_section(slm: dict, partner: dict, weight: float, model_only: float) -> dict:
    """The pair's gate (``cwescan.core.pair.gate``) at the SLM's ceiling, and what it clears and
    costs on each part: realistic negatives (units, lines) it spares the SLM, vulnerable records
    under it, and the pair's flags of vulnerable records it would lose."""
    ceiling = slm_ceiling(slm)
    threshold = gate(model_only, ceiling, weight)
    out = {"threshold": threshold, "slm_ceiling": ceiling, "ceiling_quantile": GATE_QUANTILE,
           "chosen": f"the encoder score under which the pair stays below its model-only threshold even when "
                     f"the SLM says {ceiling:.5f}, the {GATE_QUANTILE:.0%} quantile of its scores on vulnerable "
                     "validation records; only units without a rule finding meet it"}
    for part in ("validation", "test"):
        theirs = {section: {r["id"]: r["score"] for r in partner[section][part]} for section in ("labelled", "negatives")}
        neg = [(theirs["negatives"][r["id"]], r["code_lines"]) for r in slm["negatives"][part] if r["id"] in theirs["negatives"]]
        vul = [(theirs["labelled"][r["id"]], r["score"]) for r in slm["labelled"][part]
               if r["vulnerable"] and r["id"] in theirs["labelled"]]
        flagged = [(q, p) for q, p in vul if fuse(p, q, weight) >= model_only]
        out[part] = {"negatives": len(neg),
                     "negatives_cleared": sum(q < threshold for q, _ in neg) / len(neg),
                     "negative_lines_cleared": sum(n for q, n in neg if q < threshold) / sum(n for _, n in neg),
                     "vulnerable_records": len(vul),
                     "vulnerable_below": sum(q < threshold for q, _ in vul) / len(vul),
                     "pair_flags": len(flagged),
                     "pair_flags_lost": sum(q < threshold for q, _ in flagged)}
    return out


def gate_by_weight(slm: dict, partner: dict, prevalence: float) -> dict[str, dict[str, float]]:
    """For every weight: the gate at that weight's model-only threshold and the share of realistic
    validation negatives it clears. The weight is chosen on ranking (``choose_weight``), and the
    gate hangs on it steeply (0.4 against 0.5 cleared 89 % against none of them for the shipped
    adapter refitted on one corpus): the fit shows what the neighbouring weights would cost."""
    ceiling = slm_ceiling(slm)
    theirs = {r["id"]: r["score"] for r in partner["negatives"]["validation"]}
    negatives = [theirs[r["id"]] for r in slm["negatives"]["validation"] if r["id"] in theirs]
    out = {}
    for w in WEIGHTS:
        pos, neg = C.split_scores(fuse_scores(slm, partner, w), "validation")
        model_only = PV.choose_thresholds(pos, neg, [], prevalence)[0].model_only
        # no threshold reaches the precision: the pair never makes a model-only finding (as the fit's policy)
        threshold = gate(C.NEVER if model_only is None else model_only, ceiling, w)
        out[f"{w:.1f}"] = {"threshold": threshold,
                           "validation_negatives_cleared": sum(q < threshold for q in negatives) / len(negatives)}
    return out


def settle_bounds(slm: dict) -> tuple[float, float]:
    """The SLM scores a settled second opinion assumes (``Pairing.slm_floor`` and
    ``slm_ordinary``): quantiles of its scores on realistic validation negatives."""
    negatives = sorted(r["score"] for r in slm["negatives"]["validation"])
    return negatives[int(FLOOR_QUANTILE * len(negatives))], negatives[int(ORDINARY_QUANTILE * len(negatives))]


def settle_section(slm: dict, partner: dict, pairing: Pairing) -> dict:
    """The bounds of settled second opinions and, on each part, the share of realistic negatives
    and vulnerable records whose partner score settles a shown rule finding (``Pairing.settle``)
    either way, with what settling forgoes: the SLM's confident "safe" answers on the kept ones
    (a rule false alarm on a negative stays in view), and on the lowered ones the answers with
    which the pair would have kept them (on a vulnerable record, a real weakness hidden)."""
    floor, ordinary, weight, safe = pairing.slm_floor, pairing.slm_ordinary, pairing.weight, pairing.policy.safe
    out = {"slm_floor": floor, "floor_quantile": FLOOR_QUANTILE,
           "slm_ordinary": ordinary, "ordinary_quantile": ORDINARY_QUANTILE,
           "chosen": f"a unit with rule findings is not read by the SLM when the pair stays above its "
                     f"confident 'safe' even if the SLM says {floor:.6f}, the {FLOOR_QUANTILE:.0%} quantile of "
                     "its scores on realistic validation negatives, and no hidden finding could be raised into "
                     f"view (kept); or when the pair is at or under 'safe' even if the SLM says {ordinary:.6f}, "
                     f"their {ORDINARY_QUANTILE:.0%} quantile (lowered)"}
    for part in ("validation", "test"):
        for section, key in (("negatives", "negatives"), ("labelled", "vulnerable")):
            theirs = {r["id"]: r["score"] for r in partner[section][part]}
            rows = [(theirs[r["id"]], r["score"]) for r in slm[section][part]
                    if r["id"] in theirs and (section == "negatives" or r["vulnerable"])]
            # a shown rule finding: only a confident "safe" could change it
            verdicts = [(pairing.settle(q, (1.0,), display=0.0), q, p) for q, p in rows]
            settled = [(q, p) for v, q, p in verdicts if v == SETTLED_KEPT]
            lowered = [(q, p) for v, q, p in verdicts if v == SETTLED_SAFE]
            out.setdefault(part, {}).update({
                key: len(rows), f"{key}_settled": len(settled) / len(rows),
                f"{key}_safe_forgone": sum(fuse(p, q, weight) <= safe for q, p in settled),
                f"{key}_settled_safe": len(lowered) / len(rows),
                # lowered without the SLM where the pair with its answer would not have lowered them
                f"{key}_lowered_against_the_slm": sum(fuse(p, q, weight) > safe for q, p in lowered)})
    return out


def gated_ids(partner: dict, part: str, threshold: float) -> set[str]:
    """Ids of the labelled records of ``part`` the partner scores under the gate ``threshold``:
    the scan's first stage clears those before the SLM reads them."""
    return {r["id"] for r in partner["labelled"].get(part, []) if r["score"] < threshold}


def line_answers(lines: dict, pair: dict, part: str, threshold: float) -> list[tuple[float, bool]]:
    """(line confidence, line right) of the vulnerable records of ``part`` the pair flags at
    ``threshold``, from ``lines`` (the SLM's answers on the labelled parts: ``cwescan eval-mix
    --labelled-only``, which records each top unit's line and its confidence)."""
    flagged = {r["id"] for r in pair["labelled"][part] if r["vulnerable"] and r["score"] >= threshold}
    return [(r["line_confidence"], PV.line_right(r["line"], r["lines"]))
            for r in lines["labelled"].get(part, [])
            if r["id"] in flagged and r["lines"] and r.get("line_confidence") is not None]


def line_view(answers: list[tuple[float, bool]], threshold: float | None) -> dict:
    """How the line policy does on flagged vulnerable records: lines right overall, and among
    the findings that point at their line (the others span their unit)."""
    pointed = [ok for c, ok in answers if threshold is not None and c >= threshold]
    return {"flagged_with_labelled_lines": len(answers),
            "lines_right": sum(ok for _, ok in answers) / len(answers) if answers else None,
            "pointed": len(pointed), "pointed_right": sum(pointed) / len(pointed) if pointed else None}


def fit(slm: dict, partner: dict, manifest: dict, prevalence: float, safe_loss: float = SAFE_LOSS,
        lines: dict | None = None) -> dict:
    """Weight, thresholds, calibration and every measurement of one pair of score files
    (``lines``: the SLM's line answers, for the line threshold; without them the line policy
    keeps its default)."""
    from cwescan.core.policy import DecisionPolicy, Isotonic
    from cwescan.data.split import load_part
    from cwescan.evaluate.pipeline_view import pipeline_view

    weight, aucs = choose_weight(slm, partner)
    pair = fuse_scores(slm, partner, weight)
    main = C.analyse(pair, manifest, prevalence, safe_loss=safe_loss)
    section = C.policy_section(main, prevalence, safe_loss)
    line = {}
    if lines is not None:
        th = section["model_only"]
        val = line_answers(lines, pair, "validation", th)
        section["line"] = PV.confidence_threshold(val, PV.LINE_PRECISION)
        if section["line"] is None:  # no confidence makes half of the lines right: span the unit
            section["line"] = C.NEVER
        section["chosen"] = section["chosen"].replace(
            "; line keeps the policy default (no line confidence was scored)", "")
        section["chosen"] += (f"; line = lowest line confidence from which >= {PV.LINE_PRECISION:.0%} of the "
                              f"lines of flagged vulnerable validation records are within +-{PV.LINE_TOLERANCE} "
                              "of a labelled line (else the finding spans its unit)")
        line = {"validation": line_view(val, section["line"]),
                "test": line_view(line_answers(lines, pair, "test", th), section["line"]),
                "scored_on": {k: lines.get(k) for k in ("precision", "device", "command")}}
    policy = DecisionPolicy(**{k: section[k] for k in ("model_only", "safe", "vulnerable", "cwe_head")},
                            calibration=Isotonic.from_dict(main["calibration"]))
    gated = gate_section(slm, partner, weight, section["model_only"])
    pairing = Pairing(partner.get("detector", "encoder"), weight, {}, policy, gated["threshold"],
                      gated["slm_ceiling"], *settle_bounds(slm))
    settle = settle_section(slm, partner, pairing)
    test = {r["id"]: r["score"] for r in pair["labelled"]["test"]}
    below = gated_ids(partner, "test", gated["threshold"])
    records = [r for r in load_part("test") if r.id in test]
    return {"weight": weight, "validation_auc_by_weight": aucs, "analysis": main, "policy": section,
            "gate": gated, "gate_by_weight": gate_by_weight(slm, partner, prevalence), "settle": settle,
            "pipeline_test": pipeline_view(records, test, policy, below, settled_by(pairing, partner, "test")),
            "pipeline_test_ungated": pipeline_view(records, test, policy), **({"line": line} if line else {})}


def settled_by(pairing: Pairing, partner: dict, part: str):
    """For the pipeline view: whether a labelled record's rule findings (their confidences) are
    settled by the partner's score, as a scan decides it (``Pairing.settle``)."""
    theirs = {r["id"]: r["score"] for r in partner["labelled"].get(part, [])}

    def settle(rid: str, confidences: list[float]) -> tuple[str | None, float]:
        if rid not in theirs:
            return None, 0.0
        return pairing.settle(theirs[rid], confidences, pairing.policy.display), theirs[rid]

    return settle


def _line(name: str, f: dict) -> str:
    h, v = f["analysis"]["held_out_model_only"], f["pipeline_test"]["scan"]
    so = f["pipeline_test"]["second_opinion"]
    return (f"{name:8} weight {f['weight']:.1f} mixAUC(val) {f['analysis']['validation_mix']['auc']:.3f} "
            f"(test) {f['analysis']['test_mix']['auc']:.3f} | model-only: recall {h['recall']:.3f} "
            f"FA/1k lines {h['false_alarms_per_1k_lines'] or 0:.4f} (shown by default: recall "
            f"{f['analysis']['held_out_model_only_shown']['recall']:.3f} FA/1k lines "
            f"{f['analysis']['held_out_model_only_shown']['false_alarms_per_1k_lines'] or 0:.4f}) | "
            f"scan on test part: P {v['precision'] or 0:.3f} "
            f"R {v['recall'] or 0:.3f} F1 {v['f1'] or 0:.3f} MCC {v['mcc']:.3f}, rule TPs hidden "
            f"{100 * so['share_of_true_positives_lost']:.1f} %")


def _print_fit(main: dict) -> None:
    """What ``cwescan train pair`` prints of one fit: the pair, its gate, settled second opinions
    and the line threshold."""
    print(_line("pair", main))
    g = main["gate"]
    print(f"gate {g['threshold']:.5f} (SLM ceiling {g['slm_ceiling']:.5f}): " + "; ".join(
        f"{part}: {g[part]['negatives_cleared']:.1%} of negatives cleared, {g[part]['pair_flags_lost']} of "
        f"{g[part]['pair_flags']} pair flags lost" for part in ("validation", "test")))
    print("validation negatives the gate would clear, by weight: " + ", ".join(
        f"{w} {v['validation_negatives_cleared']:.0%}" for w, v in main["gate_by_weight"].items()))
    st = main["settle"]
    print(f"settle (SLM floor {st['slm_floor']:.6f}, ordinary {st['slm_ordinary']:.6f}): " + "; ".join(
        f"{part}: kept {st[part]['negatives_settled']:.1%} of negatives ({st[part]['negatives_safe_forgone']} 'safe' "
        f"forgone), {st[part]['vulnerable_settled']:.1%} of vulnerable records; lowered "
        f"{st[part]['negatives_settled_safe']:.1%} of negatives, {st[part]['vulnerable_settled_safe']:.1%} of "
        f"vulnerable records ({st[part]['vulnerable_lowered_against_the_slm']} against the SLM)"
        for part in ("validation", "test")))
    if "line" in main:
        lv = main["line"]
        print(f"line threshold {main['policy']['line']}: validation {lv['validation']}; test {lv['test']}")


def run(scores: Path, partner_scores: Path, manifest_path: Path, card_dir: Path | None = None,
        partner_dir: Path | None = None, repeat_scores: Path | None = None,
        partner_repeat_scores: Path | None = None, prevalence: float = PV.DEFAULT_PREVALENCE,
        write: bool = False, report: Path | None = None, line_scores: Path | None = None) -> dict:
    from cwescan.data.negatives import read_manifest
    from cwescan.ml.artifacts import read_card, write_card

    manifest = read_manifest(manifest_path)
    slm, partner = C.read_scores(scores), C.read_scores(partner_scores)
    lines = C.read_scores(line_scores) if line_scores else None
    result = {"main": fit(slm, partner, manifest, prevalence, lines=lines),
              "slm_alone": C.analyse(slm, manifest, prevalence)}
    _print_fit(result["main"])
    if repeat_scores and partner_repeat_scores:
        result["repeat"] = fit(C.read_scores(repeat_scores), C.read_scores(partner_repeat_scores), manifest, prevalence)
        print(_line("repeat", result["repeat"]))
        f1 = lambda f: f["pipeline_test"]["scan"]["f1"] or 0.0
        result["reproduction_scan_f1_delta_points"] = 100 * abs(f1(result["main"]) - f1(result["repeat"]))
        print(f"reproduction: scan F1 on the test part differs by {result['reproduction_scan_f1_delta_points']:.2f} points")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1) + "\n")
    if write and card_dir and partner_dir:
        partner_card = read_card(partner_dir)
        weights = model_files(partner_card.get("files") or {})
        scored = model_files(partner.get("adapter_files") or {})
        if scored and scored != weights:
            raise ValueError(f"{partner_scores} was scored with other {partner_card.get('kind', 'partner')} weights "
                             f"than {partner_dir} holds")
        card = read_card(card_dir)
        main = result["main"]
        command = ["cwescan", "train", "pair", "--scores", str(scores), "--partner-scores", str(partner_scores),
                   "--negatives-manifest", str(manifest_path), "--card", str(card_dir), "--partner-card", str(partner_dir)]
        if line_scores:
            command += ["--line-scores", str(line_scores)]
        if "repeat" in result:
            command += ["--repeat-scores", str(repeat_scores), "--partner-repeat-scores", str(partner_repeat_scores)]
        card["pair"] = {
            "partner": partner.get("detector", "encoder"),
            "partner_files": weights,
            "weight": main["weight"],
            "weight_how": "of the SLM's log-odds; the lowest weight in 0.1..0.9 whose ROC-AUC of vulnerable "
                          f"validation records against realistic validation negatives is within {AUC_TIE} of the "
                          "best (the cheaper scan among equals: a higher gate)",
            "validation_auc_by_weight": main["validation_auc_by_weight"],
            "policy": main["policy"],
            "calibration": main["analysis"]["calibration"],
            "thresholds_how": main["analysis"]["thresholds_how"],
            "evaluation_realistic": {k: v for k, v in main["analysis"].items()
                                     if k not in ("thresholds", "thresholds_how", "calibration")},
            "gate": main["gate"],
            "gate_by_weight": main["gate_by_weight"],
            "settle": main["settle"],
            "pipeline_test": main["pipeline_test"],
            **({"line": main["line"]} if "line" in main else {}),
            **({"reproduction": {"scan_f1_delta_points": result["reproduction_scan_f1_delta_points"],
                                 "weight": result["repeat"]["weight"],
                                 "policy": result["repeat"]["policy"],
                                 "pipeline_test": result["repeat"]["pipeline_test"],
                                 "test_mix": result["repeat"]["analysis"]["test_mix"],
                                 "held_out_model_only": result["repeat"]["analysis"]["held_out_model_only"]}}
               if "repeat" in result
               # a reproduction measured before (other runs, other commands) stays with the card
               else {"reproduction": card["pair"]["reproduction"]} if "reproduction" in card.get("pair", {}) else {}),
            "command": shlex.join(command + ["--write"]),
        }
        write_card(card_dir, card)
    return result
