"""Cut a unit's tokens into model-sized windows along whole lines, with overlap.

Every token of the unit lands in at least one window: windows end at line boundaries, the next
window starts a few lines back (overlap, so a statement split across a boundary is still seen
whole once), and a single line longer than a window is cut into consecutive pieces of that line
only. Nothing is dropped; a unit's score is the maximum over its windows."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from cwescan.ml.encoder.tokenizer import BOS, EOS, encode_with_offsets


@dataclass
class Window:
    ids: list[int]  # <s> tokens... </s>
    lines: list[int]  # 1-based line of the unit's code for each token of ``ids`` (0 for <s>, </s>)
    first_line: int
    last_line: int


def token_lines(text: str, offsets: list[int]) -> list[int]:
    """The 1-based line in which each token starts (a token such as "\\n    " that spans a
    line break belongs to the line where it starts)."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    return [bisect.bisect_right(starts, o) for o in offsets]


def make_windows(tok, text: str, max_tokens: int = 512, overlap_tokens: int = 64) -> list[Window]:
    """Windows of at most ``max_tokens`` ids (specials included) covering all of ``text``.

    Returns [] for text with no tokens. ``overlap_tokens`` bounds how many tokens of whole
    trailing lines the next window repeats."""
    if max_tokens < 8:
        raise ValueError("max_tokens must be at least 8")
    ids, offsets = encode_with_offsets(tok, text)
    if not ids:
        return []
    lines = token_lines(text, offsets)
    budget = max_tokens - 2
    # token index ranges per line, in order: (line, start, end)
    spans: list[tuple[int, int, int]] = []
    for i, ln in enumerate(lines):
        if spans and spans[-1][0] == ln:
            spans[-1] = (ln, spans[-1][1], i + 1)
        else:
            spans.append((ln, i, i + 1))

    windows: list[Window] = []

    def emit(a: int, b: int) -> None:
        windows.append(Window([BOS, *ids[a:b], EOS], [0, *lines[a:b], 0], lines[a], lines[b - 1]))

    k = 0
    while k < len(spans):
        ln, a, b = spans[k]
        if b - a > budget:  # one line longer than a window: consecutive pieces of it
            for s in range(a, b, budget):
                emit(s, min(b, s + budget))
            k += 1
            continue
        end = k
        while end + 1 < len(spans) and spans[end + 1][2] - a <= budget:
            end += 1
        emit(a, spans[end][2])
        if end + 1 >= len(spans):
            break
        # the next window repeats trailing whole lines of this one, up to overlap_tokens
        nxt = end + 1
        while nxt - 1 > k and spans[end][2] - spans[nxt - 1][1] <= overlap_tokens:
            nxt -= 1
        k = nxt
    return windows
