"""split_text on its own: where long texts are cut for MiniMax's per-request limit."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from odeatts.text import PAUSE, split_text


def test_a_short_text_is_one_part() -> None:
    assert split_text("Hello there.", 100) == ["Hello there."]


def test_sentences_are_kept_whole_when_they_fit() -> None:
    text = "One two three. Four five six. Seven eight nine."
    assert split_text(text, 30) == ["One two three. Four five six. ", "Seven eight nine."]


def test_a_sentence_too_long_is_cut_at_a_clause_then_at_a_space() -> None:
    assert split_text("alpha beta, gamma delta epsilon", 20) == [
        "alpha beta, ",
        "gamma delta epsilon",
    ]
    assert split_text("alpha beta gamma delta", 12) == ["alpha beta ", "gamma delta"]


def test_a_word_longer_than_the_limit_is_cut_inside_as_a_last_resort() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_pause_marker_is_never_cut() -> None:
    text = "a" * 8 + "<#1.5#>" + "b" * 8
    parts = split_text(text, 10)
    assert "".join(parts) == text
    assert any("<#1.5#>" in part for part in parts)


def test_a_part_of_whitespace_between_two_cuts_is_dropped_not_joined() -> None:
    """Found by Hypothesis: no clause or space fits, so the first cut falls at the limit,
    the next at the space after it; that lone space is not sent as a part."""
    assert split_text(";;<#12.25#>; <#0.5#>;;;;;", 12) == [";;<#12.25#>;", "<#0.5#>;;;;;"]


def test_a_blank_paragraph_break_is_a_boundary() -> None:
    assert split_text("First part here.\n\n\n\nSecond part here.", 20) == [
        "First part here.\n\n\n\n",
        "Second part here.",
    ]


WORDS = st.text(st.sampled_from("abc  .,;!?\n"), max_size=300)
WITH_PAUSES = st.lists(
    st.one_of(WORDS, st.sampled_from(["<#0.5#>", "<#12.25#>", "<#3#>"])), max_size=12
).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=WITH_PAUSES, limit=st.integers(12, 120))
def test_parts_fit_keep_every_word_and_marker_in_order(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(len(part) <= limit for part in parts)
    # The parts, in order, are the text: only whitespace lies between them (a part that
    # was all whitespace is dropped, e.g. ";;<#12.25#>;", " ", "<#0.5#>;;;;;" at 12).
    assert re.fullmatch(r"\s*" + r"\s*".join(map(re.escape, parts)) + r"\s*", text)
    assert sum(len(PAUSE.findall(p)) for p in parts) == len(PAUSE.findall(text))
