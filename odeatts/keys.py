"""API keys: format, generation and hashing.

A key looks like ``odea_<8-char id>_<32-char secret>``. The id part is stored in the
clear as ``prefix`` so operators and callers can tell keys apart; the whole key is
stored only as HMAC-SHA256 under a server pepper, so a stolen database cannot be
replayed against us and cannot be brute-forced offline without the pepper.

Lookup is by the hash itself (a unique index), so a hit and a miss cost the same:
one HMAC and one indexed query. There is no per-candidate comparison to time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

__all__ = [
    "KEY_PREFIX",
    "NewKey",
    "generate_key",
    "hash_key",
    "key_prefix",
    "looks_like_key",
    "looks_like_prefix",
]

KEY_PREFIX = "odea_"
_ALPHABET = string.ascii_letters + string.digits
_PREFIX_RE = re.compile(r"odea_[A-Za-z0-9]{8}")
_KEY_RE = re.compile(_PREFIX_RE.pattern + r"_[A-Za-z0-9]{32}")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly made key: ``plain`` is shown once and never stored."""

    plain: str
    prefix: str
    hash: str


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def generate_key(pepper: bytes) -> NewKey:
    plain = f"{KEY_PREFIX}{_random(8)}_{_random(32)}"
    return NewKey(plain=plain, prefix=key_prefix(plain), hash=hash_key(plain, pepper))


def hash_key(plain: str, pepper: bytes) -> str:
    return hmac.new(pepper, plain.encode(), hashlib.sha256).hexdigest()


def looks_like_key(value: str) -> bool:
    """Cheap shape check so garbage never reaches the database."""
    return bool(_KEY_RE.fullmatch(value))


def looks_like_prefix(value: str) -> bool:
    """The public part alone, as operators type it (``odea_XXXXXXXX``)."""
    return bool(_PREFIX_RE.fullmatch(value))


def key_prefix(plain: str) -> str:
    """The public part: ``odea_`` and the 8-character id."""
    return plain[: len(KEY_PREFIX) + 8]
