"""How many seconds of audio a text will make, before we ask MiniMax.

The reservation is this estimate; the charge is the real duration afterwards. A
high estimate refuses a job that would have fitted near the end of a quota; a low
one lets the last job overshoot by the difference. We aim slightly high.
"""

from __future__ import annotations

import math
import re

from odeatts.text import PAUSE

__all__ = ["CHARS_PER_SECOND", "WORDS_PER_SECOND", "estimate_ms"]

# About 150 words per minute of ordinary English speech at speed 1.0.
WORDS_PER_SECOND = 150 / 60
CHARS_PER_SECOND = 15.0
_WORD = re.compile(r"\w+")
_MARGIN = 1.1


def estimate_ms(text: str, speed: float = 1.0) -> int:
    pauses = sum(float(s) for s in PAUSE.findall(text))
    spoken = PAUSE.sub(" ", text)
    words = len(_WORD.findall(spoken))
    chars = len(spoken.strip())
    seconds = max(words / WORDS_PER_SECOND, chars / CHARS_PER_SECOND) / speed
    return max(math.ceil((seconds * _MARGIN + pauses) * 1000), 500)
