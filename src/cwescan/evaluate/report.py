"""metrics.json, report.md and the PNG plots of one `cwescan eval` run."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cwescan.data.records import Record
from cwescan.evaluate.runner import DetectorRun

TABLE_START = "<!-- eval-table:start -->"
TABLE_END = "<!-- eval-table:end -->"


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


MAIN_HEADER = [
    "detector", "records", "precision", "recall", "F1", "accuracy", "MCC", "ROC-AUC", "PR-AUC",
    "CWE precision", "CWE recall", "lines ±2", "pair: vuln higher", "pair: both right", "ECE", "records/s",
]


def main_rows(runs: dict[str, DetectorRun]) -> list[list]:
    rows = []
    for name, run in runs.items():
        m = run.metrics
        b = m["binary"]
        rows.append([
            name + (f" ({m['errors']} errors)" if m["errors"] else ""),
            b["n"], b["precision"], b["recall"], b["f1"], b["accuracy"], b["mcc"],
            m["ranking"]["roc_auc"], m["ranking"]["pr_auc"],
            m["typed"]["precision"], m["typed"]["recall"], m["localisation"]["share"],
            m["pairwise"]["vuln_scores_higher"], m["pairwise"]["both_right"],
            m["calibration"]["ece"],
            f"{m['timing']['records_per_s']:.1f}" if m["timing"]["records_per_s"] is not None else None,
        ])
    return rows


def main_table(runs: dict[str, DetectorRun]) -> str:
    return _table(MAIN_HEADER, main_rows(runs))


def _prf(b: dict) -> str:
    return " · ".join(fmt(b[k], 2) for k in ("precision", "recall", "f1"))


def render_markdown(records: Sequence[Record], runs: dict[str, DetectorRun], meta: dict) -> str:
    names = list(runs)
    n_vuln = sum(r.vulnerable for r in records)
    out = [
        "# cwescan evaluation",
        "",
        f"Records: {len(records)} ({n_vuln} vulnerable) from {meta.get('input')}.",
    ]
    if meta.get("manifest_hash"):
        out.append(f"Split manifest_hash: `{meta['manifest_hash']}`.")
    pairs = next(iter(runs.values())).metrics["pairwise"]["pairs"] if runs else 0
    out += [
        f"Vulnerable/fixed twin pairs: {pairs}. Command: `{meta.get('command', 'cwescan eval')}`.",
        "",
        "## Overall",
        "",
        main_table(runs),
        "",
        "## Per source (precision · recall · F1)",
        "",
    ]
    sources = Counter(r.source for r in records)
    vuln_by_source = Counter(r.source for r in records if r.vulnerable)
    rows = [
        [s, n, vuln_by_source[s]] + [_prf(runs[d].metrics["per_source"][s]) for d in names]
        for s, n in sorted(sources.items())
    ]
    out += [_table(["source", "records", "vulnerable", *names], rows), ""]

    out += [
        "## Per CWE family (share detected at all / CWE-typed F1)",
        "",
    ]
    fams: Counter = Counter()
    for run in runs.values():
        for fam, v in run.metrics["per_cwe"].items():
            fams[fam] = v["n"]
    rows = []
    for fam, n in sorted(fams.items(), key=lambda kv: (-kv[1], kv[0])):
        cells = []
        for d in names:
            v = runs[d].metrics["per_cwe"].get(fam)
            cells.append(f"{fmt(v['detected'], 2)} / {fmt(v['f1'], 2)}" if v else "n/a")
        rows.append([fam, n, *cells])
    out += [_table(["CWE family", "vulnerable records", *names], rows), ""]

    for d in names:
        conf = runs[d].metrics["family_confusion"]
        row_tot = {r: sum(c.values()) for r, c in conf.items()}
        top_rows = sorted(conf, key=lambda r: (-row_tot[r], r))[:12]
        col_tot: Counter = Counter()
        for r in conf:
            col_tot.update(conf[r])
        top_cols = [c for c, _ in sorted(col_tot.items(), key=lambda kv: (-kv[1], kv[0]))[:9]]
        rows = [
            [r, *[conf[r].get(c, 0) for c in top_cols], sum(v for c, v in conf[r].items() if c not in top_cols)]
            for r in top_rows
        ]
        out += [
            f"## CWE family confusion: {d} (rows: label, columns: prediction; top 12 rows)",
            "",
            _table(["label \\ predicted", *top_cols, "other"], rows),
            "",
        ]

    if any(run.perturbation for run in runs.values()):
        out += ["## Robustness to semantics-preserving rewrites", ""]
        rows = []
        kinds = sorted({k for d in names for k in runs[d].perturbation})
        for kind in kinds:
            for d in names:
                v = runs[d].perturbation.get(kind)
                if v:
                    rows.append([kind, d, v["applicable"], v["flip_rate"], v["vuln_to_safe"], v["vuln_to_safe_rate"]])
        out += [
            _table(["perturbation", "detector", "applicable records", "verdict flip rate", "vuln→safe flips",
                    "vuln→safe rate (of caught)"], rows),
            "",
        ]
    return "\n".join(out)


def write_plots(records: Sequence[Record], runs: dict[str, DetectorRun], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    y = [r.vulnerable for r in records]
    written = []

    fig, ax = plt.subplots(figsize=(6, 5))
    if any(y) and not all(y):
        for name, run in runs.items():
            p, r, _ = precision_recall_curve(y, [x.score for x in run.predictions])
            ax.plot(r, p, label=f"{name} (AP {fmt(run.metrics['ranking']['pr_auc'], 2)})")
        ax.axhline(sum(y) / len(y), color="grey", linestyle=":", label="share vulnerable")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "pr_curve.png", dpi=110)
    plt.close(fig)
    written.append("pr_curve.png")

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, run in runs.items():
        bins = [b for b in run.metrics["calibration"]["bins"] if b["count"]]
        ax.plot([b["mean_score"] for b in bins], [b["share_vulnerable"] for b in bins], marker="o",
                label=f"{name} (ECE {fmt(run.metrics['calibration']['ece'], 2)})")
    ax.set(xlabel="mean score in bin", ylabel="share vulnerable in bin", title="Reliability (10 bins)",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)
    written.append("reliability.png")

    fams: Counter = Counter()
    for run in runs.values():
        for fam, v in run.metrics["per_cwe"].items():
            fams[fam] = v["n"]
    top = [f for f, _ in sorted(fams.items(), key=lambda kv: (-kv[1], kv[0]))[:15]]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(top) + 2), 4.5))
    width = 0.8 / max(1, len(runs))
    for k, (name, run) in enumerate(runs.items()):
        vals = [(run.metrics["per_cwe"].get(f) or {}).get("f1") or 0.0 for f in top]
        ax.bar([i + k * width for i in range(len(top))], vals, width=width, label=name)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(top))])
    ax.set_xticklabels([f"{f}\n(n={fams[f]})" for f in top], rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="CWE-typed F1", ylim=(0, 1), title="CWE-typed F1 per family (most frequent first)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "per_cwe_f1.png", dpi=110)
    plt.close(fig)
    written.append("per_cwe_f1.png")
    return written


def write_outputs(records: Sequence[Record], runs: dict[str, DetectorRun], meta: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "detectors": {name: run.metrics for name, run in runs.items()}}
    (out / "metrics.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(records, runs, meta) + "\n", encoding="utf-8")
    pngs = write_plots(records, runs, out)
    return [out / "metrics.json", out / "report.md", *(out / p for p in pngs)]


def doc_block(runs: dict[str, DetectorRun], meta: dict) -> str:
    return "\n".join([
        TABLE_START,
        f"<!-- generated by `{meta.get('command', 'cwescan eval')}`; do not edit by hand -->",
        "",
        f"{meta.get('records')} records of {meta.get('input')}"
        + (f" (split `{meta['manifest_hash'][:12]}`)" if meta.get("manifest_hash") else "")
        + ".",
        "",
        main_table(runs),
        "",
        TABLE_END,
    ])


def update_doc(path: Path, runs: dict[str, DetectorRun], meta: dict, keep_rows: bool = True) -> None:
    """Rewrite the block between the eval-table markers of ``path`` (appended when missing).
    With ``keep_rows``, rows of detectors not in this run are kept, so the model engineers can
    add their rows without re-running every detector."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = doc_block(runs, meta)
    pattern = re.compile(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), re.S)
    old = pattern.search(text)
    if old and keep_rows:
        kept = [
            line for line in old.group(0).splitlines()
            if line.startswith("| ") and not line.startswith("| detector")
            and line.split("|")[1].strip().split(" ")[0] not in runs
        ]
        if kept:
            lines = block.splitlines()
            at = max(i for i, line in enumerate(lines) if line.startswith("| ")) + 1
            block = "\n".join(lines[:at] + kept + lines[at:])
    text = pattern.sub(lambda _m: block, text) if old else text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
