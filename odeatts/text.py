"""Splitting long texts for MiniMax's per-request limit.

Parts end at sentence boundaries where possible, then at clause boundaries, then at
spaces, and only as a last resort inside a word. A pause marker (``<#1.5#>``) is
never cut. Joining the parts back gives the original text, so nothing is lost or
synthesised twice.
"""

from __future__ import annotations

import re

__all__ = ["PAUSE", "split_text"]

_SENTENCE = re.compile(r"(?<=[.!?…。！？])[\"')\]]*\s+|\n\s*\n")
_CLAUSE = re.compile(r"(?<=[,;:—])\s+")
_SPACE = re.compile(r"\s+")
# A pause marker, ``<#x.xx#>``: up to 99.99 seconds of silence (group 1: the seconds).
PAUSE = re.compile(r"<#(\d{1,2}(?:\.\d{1,2})?)#>")


def _cut_points(text: str, pattern: re.Pattern[str]) -> list[int]:
    pauses = [m.span() for m in PAUSE.finditer(text)]
    return [m.end() for m in pattern.finditer(text) if not any(a < m.end() < b for a, b in pauses)]


def _best_cut(text: str, limit: int) -> int:
    for pattern in (_SENTENCE, _CLAUSE, _SPACE):
        points = [p for p in _cut_points(text, pattern) if 0 < p <= limit]
        if points:
            return points[-1]
    for marker in PAUSE.finditer(text):  # never inside a marker
        if marker.start() < limit < marker.end():
            return marker.start() or marker.end()
    return limit


def split_text(text: str, max_chars: int) -> list[str]:
    """Parts of at most ``max_chars``, in order; only whitespace-only parts are dropped."""
    parts: list[str] = []
    rest = text
    while len(rest) > max_chars:
        cut = _best_cut(rest, max_chars)
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return [p for p in parts if p.strip()] or [text]
