"""Masking secrets in text: the log formatters' last line of defence.

Secrets should never reach a log call in the first place. This catches what slips
through anyway: an exception whose message or traceback quotes a database URL, a
header dump with a bearer token, a caller's key echoed back. Two kinds of masking:

- shapes any secret of that kind has (``odea_`` keys, ``Bearer ...``, the password
  of any ``scheme://user:pass@host`` URL, ``password=``/``api_key=``/``token=``/...
  assignments and query parameters, and the signature of S3 presigned URLs, which
  are bearer credentials until they expire);
- the literal values of the secrets this deployment is configured with, wherever
  they appear (a driver that prints the password alone matches no shape).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "MIN_LITERAL_CHARS", "Redactor", "redact"]

MASK = "[redacted]"
# Shorter "secrets" would mask common words all over the logs and protect nothing.
MIN_LITERAL_CHARS = 6

_NAMES = (
    r"pass(?:word|wd)?|pwd|secret|client[_-]?secret|secret[_-]?access[_-]?key|access[_-]?key"
    r"|api[_-]?key|apikey|key|(?:access[_-]?|refresh[_-]?|auth[_-]?)?token|signature|sig"
    r"|x-amz-(?:signature|credential|security-token)"
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"odea_[A-Za-z0-9]{8}_[A-Za-z0-9]+"), "odea_" + MASK),
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\"]+"), r"\1" + MASK),
    # Any scheme, any user (empty too: redis://:pass@host). Greedy up to the last @ of
    # the token: a password with a raw @ is masked whole (over-masking is the safe side).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s'\"]+@"), r"\1" + MASK + "@"),
    # name=value: query strings (?password=, &api_key=, X-Amz-Signature=) and DSNs.
    (re.compile(rf"(?i)(?<![\w-])((?:{_NAMES})=)[^\s&'\"#,;\\]+"), r"\1" + MASK),
    # 'name': 'value' in a dict's repr or a JSON text (headers, a job's input).
    # A bearer token is masked above, keeping the scheme for whoever debugs.
    # The value runs to its closing quote, past escaped ones.
    (
        re.compile(
            rf"(?i)([\"'](?:x-)?(?:{_NAMES}|authorization)[\"']\s*:\s*([\"']))"
            r"(?!bearer\s)(?:\\.|(?!\2)[^\\\n])+"
        ),
        r"\1" + MASK,
    ),
]

# What each pattern above cannot match without (tested on the text lowercased): a line
# that has none of these is spared the pattern (a job's log line: 6 passes, now 1).
_NEEDS: list[tuple[str, ...]] = [("odea_",), ("bearer",), ("://",), ("=",), ("'", '"')]
assert len(_NEEDS) == len(_PATTERNS)

# A mapping key that names a secret: its string value is masked whatever it looks like.
_SECRET_KEY = re.compile(rf"(?i)(?:x-)?(?:{_NAMES}|authorization)")


# Strings up to this long are remembered once masked, this many at most.
_SHORT_CHARS, _SHORT_KEPT = 80, 4096


class Redactor:
    """The patterns above, plus the literal secrets it is given (longest first, so a
    secret that contains another is masked whole)."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        kept = sorted({s for s in literals if len(s) >= MIN_LITERAL_CHARS}, key=len, reverse=True)
        self._literals = re.compile("|".join(map(re.escape, kept))) if kept else None
        self._short: dict[str, str] = {}

    def text(self, text: str) -> str:
        """``text`` with every secret masked. Short strings are remembered: a JSON log
        line is a dozen of them (its keys, the level, the logger, the job's ids), the
        same on every line, and each took every pattern (0.4 ms a line, 0.15 now)."""
        if len(text) > _SHORT_CHARS:
            return self._masked(text)
        masked = self._short.get(text)
        if masked is None:
            if len(self._short) >= _SHORT_KEPT:
                self._short.clear()
            masked = self._short[text] = self._masked(text)
        return masked

    def _masked(self, text: str) -> str:
        if self._literals is not None:
            text = self._literals.sub(MASK, text)
        lowered = text.lower()
        for (pattern, replacement), needs in zip(_PATTERNS, _NEEDS, strict=True):
            if any(needed in lowered for needed in needs):
                text = pattern.sub(replacement, text)
        return text

    def tree(self, value: Any) -> Any:
        """Every string in a decoded JSON value (keys too), so the result stays JSON; the
        string under a key like ``password`` or ``Authorization`` is masked whole."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.tree(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self._entry(str(k), v) for k, v in value.items()}
        return value

    def _entry(self, key: str, value: Any) -> Any:
        if isinstance(value, str) and _SECRET_KEY.fullmatch(key):
            return MASK
        return self.tree(value)


_SHAPES_ONLY = Redactor()


def redact(text: str) -> str:
    """The shapes alone, for callers that know no configured secret."""
    return _SHAPES_ONLY.text(text)
