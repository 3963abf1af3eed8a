"""Logging set-up: one format, and a filter that masks secrets whatever a caller logs.

Secrets should never reach a log call in the first place; the filter is the second
line of defence (an exception message that quotes a key, a URL with a password).
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["RedactSecrets", "configure_logging", "redact"]

_PATTERNS = [
    (re.compile(r"odea_[A-Za-z0-9]{8}_[A-Za-z0-9]+"), "odea_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s'\"]+"), r"\1[redacted]"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[redacted]@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Replace whatever ``import runpod`` configured (it sets root logging at import)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
