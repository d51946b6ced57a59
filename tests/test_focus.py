"""Which windows of a long unit a model reads (cwescan.ml.focus), shared by the SLM and the encoder."""

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from cwescan.ml.focus import focused


@dataclass
class Span:
    first_line: int
    last_line: int


def test_only_windows_holding_a_focus_line_are_kept():
    ws = [Span(1, 10), Span(8, 20), Span(18, 30)]
    assert focused(ws, [12]) == [ws[1]]
    assert focused(ws, [9]) == ws[:2]  # the overlap: both windows hold it
    assert focused(ws, [2, 25]) == [ws[0], ws[2]]


def test_everything_is_read_when_focus_says_nothing():
    ws = [Span(1, 10), Span(8, 20)]
    assert focused(ws, []) == ws  # no focus lines
    assert focused(ws, [99]) == ws  # no window holds one
    assert focused(ws[:1], [99]) == ws[:1]  # one window: nothing to choose


@given(st.lists(st.integers(1, 40), max_size=6), st.integers(1, 5))
def test_kept_windows_are_a_nonempty_ordered_subset(focus, n):
    ws = [Span(1 + 8 * i, 10 + 8 * i) for i in range(n)]
    kept = focused(ws, focus)
    assert kept and all(w in ws for w in kept)
    assert [ws.index(w) for w in kept] == sorted(ws.index(w) for w in kept)
