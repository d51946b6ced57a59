"""Windowing: every token of a unit lands in a window, windows respect the size limit and
line boundaries, and a line longer than a window is split rather than cut."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwescan.ml.encoder.tokenizer import BOS, EOS, MASK, PAD, encode_with_offsets
from cwescan.ml.encoder.windows import make_windows, token_lines
from encoder_helpers import corpus, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def covered(tok, text, max_tokens, overlap):
    ids, offsets = encode_with_offsets(tok, text)
    lines = token_lines(text, offsets)
    windows = make_windows(tok, text, max_tokens, overlap)
    return ids, lines, windows


def check(tok, text, max_tokens=24, overlap=6):
    ids, lines, windows = covered(tok, text, max_tokens, overlap)
    if not ids:
        assert windows == []
        return windows
    # every window is <s> ... </s>, within the limit, with one line number per token
    for w in windows:
        assert w.ids[0] == BOS and w.ids[-1] == EOS
        assert len(w.ids) <= max_tokens
        assert len(w.lines) == len(w.ids) and w.lines[0] == 0 and w.lines[-1] == 0
    # reassemble the token stream: windows appear in order and, after removing overlap,
    # reproduce every token exactly once
    stream_pos, rebuilt = 0, []
    for w in windows:
        body, body_lines = w.ids[1:-1], w.lines[1:-1]
        # find where this window starts in the original stream (at or before stream_pos)
        start = next(
            s for s in range(stream_pos, -1, -1)
            if ids[s : s + len(body)] == body and lines[s : s + len(body)] == body_lines
        )
        assert start <= stream_pos
        rebuilt.extend(body[stream_pos - start :])
        stream_pos = start + len(body)
    assert rebuilt == ids
    # a window starts and ends at line boundaries unless its line alone exceeds the window
    for w in windows:
        body_lines = w.lines[1:-1]
        n_first = lines.count(body_lines[0])
        if n_first <= max_tokens - 2:
            assert body_lines.count(body_lines[0]) == n_first
    assert len(tok.decode(ids)) > 0
    return windows


def test_special_token_ids(tok):
    assert [tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<mask>")] == [BOS, PAD, EOS, MASK]


def test_tokenizer_keeps_case_and_whitespace(tok):
    text = "def F(x):\n\tReturn = X  # Ünï\r\n    pass\n"
    ids, _ = encode_with_offsets(tok, text)
    assert tok.decode(ids) == text


def test_windows_cover_real_code(tok):
    for text in corpus(5):
        windows = check(tok, text)
        assert len(windows) > 1


def test_long_single_line_is_split_not_cut(tok):
    text = "x = [" + ", ".join(str(i) for i in range(300)) + "]\ny = 1\n"
    ids, lines, windows = covered(tok, text, 24, 6)
    assert sum(1 for w in windows if set(w.lines[1:-1]) == {1}) >= len([t for t in lines if t == 1]) // 22
    check(tok, text)


def test_empty_text_has_no_window(tok):
    assert make_windows(tok, "", 24) == []


def test_one_window_when_it_fits(tok):
    windows = make_windows(tok, "a = 1\nb = 2\n", 64)
    assert len(windows) == 1 and (windows[0].first_line, windows[0].last_line) == (1, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab_ (),:=\t'\"é1")), max_size=60), max_size=30))
def test_windows_never_drop_a_token(lines):
    tok = tiny_tokenizer()
    check(tok, "\n".join(lines), max_tokens=16, overlap=4)
