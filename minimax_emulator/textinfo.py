"""Facts about request text that MiniMax reports or checks.

Why: extra_info carries word_count, usage_characters (what is billed) and
invisible_character_ratio, and MiniMax refuses text that is more than 10%
invisible characters (1042). The production code bills and validates with
these numbers, so the emulator computes them the same way every time:
  - invisible: zero-width and other format (Cf) characters, plus control
    characters other than tab/newline/carriage return;
  - usage_characters: characters of the text with pause markers removed
    (the emulator does not apply MiniMax's CJK weighting);
  - word_count: Latin/digit words plus one per CJK character.
"""

from __future__ import annotations

import re
import unicodedata

from minimax_emulator.speech import PAUSE

__all__ = ["apply_tone", "invisible_ratio", "usage_characters", "word_count"]

_WORD = re.compile(r"[A-Za-z0-9\u00C0-\u024F']+|[\u3040-\u30ff\u3400-\u9fff]")


def _invisible(char: str) -> bool:
    """Whether char prints as nothing (zero-width, BOM, controls)."""
    category = unicodedata.category(char)
    return category == "Cf" or (category == "Cc" and char not in "\t\n\r")


def invisible_ratio(text: str) -> float:
    """Share of invisible characters in text (0 for empty text)."""
    if not text:
        return 0.0
    return round(sum(map(_invisible, text)) / len(text), 4)


def usage_characters(text: str) -> int:
    """Billed characters: the text without its `<#x.xx#>` pause markers."""
    return len(PAUSE.sub("", text))


def word_count(text: str) -> int:
    """Words in text (each CJK character counts as one)."""
    return len(_WORD.findall(PAUSE.sub(" ", text)))


def apply_tone(text: str, tone: list[str]) -> str:
    """Apply pronunciation_dict.tone entries ("word/replacement") to text."""
    for entry in tone:
        word, _, replacement = entry.partition("/")
        if word:
            text = text.replace(word, replacement)
    return text
