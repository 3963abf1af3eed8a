"""The subtitle file of a t2a_v2 request with ``subtitle_enable``.

Why: with subtitles on, MiniMax answers ``data.subtitle_file``, the URL of a JSON
file: a flat list of ``{"text", "time_begin", "time_end"}`` in milliseconds
(MiniMax's CLI, ``src/commands/speech/synthesize.ts``, reads exactly that). The
emulator cannot align words to espeak's audio, so it shares the audio's length out
over the sentences (or, with ``subtitle_type: "word"``, the words) by their
characters, pauses included at their stated length: plausible timings that start at
0, never overlap and end at the audio's end. The file is served over the emulator's
own HTTP, as MiniMax serves it from its CDN.
"""

from __future__ import annotations

import json
import re
from typing import Any

from minimax_emulator.speech import PAUSE

__all__ = ["subtitle_file"]

_SENTENCE = re.compile(r"[^.!?。！？]+[.!?。！？]*")
_WORD = re.compile(r"\S+")


def _pieces(text: str, word_level: bool) -> list[str | float]:
    """Spoken pieces (str) and pauses (seconds), in order."""
    pattern = _WORD if word_level else _SENTENCE
    out: list[str | float] = []
    for index, part in enumerate(PAUSE.split(text)):
        if index % 2:
            out.append(float(part))
        else:
            out.extend(m.group().strip() for m in pattern.finditer(part) if m.group().strip())
    return out


def _segments(text: str, duration_ms: int, word_level: bool) -> list[dict[str, Any]]:
    pieces = _pieces(text, word_level)
    paused = sum(p * 1000 for p in pieces if isinstance(p, float))
    spoken = sum(len(p) for p in pieces if isinstance(p, str)) or 1
    per_char = max(duration_ms - paused, 0) / spoken
    segments, clock = [], 0.0
    for piece in pieces:
        if isinstance(piece, float):
            clock += piece * 1000
            continue
        end = min(clock + len(piece) * per_char, duration_ms)
        segments.append({"text": piece, "time_begin": round(clock), "time_end": round(end)})
        clock = end
    return segments


def subtitle_file(text: str, duration_ms: int, subtitle_type: str) -> bytes:
    """The JSON file's bytes for ``text`` spoken in ``duration_ms``."""
    segments = _segments(text, duration_ms, subtitle_type == "word")
    return json.dumps(segments, ensure_ascii=False).encode()
