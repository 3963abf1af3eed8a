"""Request statistics the tests read back.

Why: the production code promises to respect MiniMax's account-wide limits
(60 RPM, concurrency) and to bill characters correctly; a test can only check
that from the server side, by looking at when requests arrived and how many
were in flight at once. The audio each synthesis made is fingerprinted (size
and sha256): espeak is not byte-for-byte repeatable, so a test can only know
that a client delivered every byte MiniMax made by comparing with these.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["ENDPOINT_NAMES", "Stats"]

ENDPOINT_NAMES = ("t2a_v2", "files/upload", "voice_clone", "get_voice", "delete_voice")


class Stats:
    """Thread-safe counters: requests per endpoint, t2a arrivals, concurrency, characters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = 0
        self.reset()

    def reset(self) -> None:
        """Zero everything. A request that arrived before counts no more when it ends
        (each count names the epoch its request arrived in): a test's stats never hold
        a call an earlier test gave up on and the emulator went on serving."""
        with self._lock:
            self._epoch += 1
            self._requests: Counter[str] = Counter(dict.fromkeys(ENDPOINT_NAMES, 0))
            self._t2a_times: list[float] = []
            self._in_flight = 0
            self._in_flight_max = 0
            self._characters = 0
            self._audio: list[dict[str, Any]] = []
            self._tones: list[list[str]] = []

    def arrived(self, endpoint: str) -> int:
        """Count a request (and time-stamp it if it is a t2a_v2 call); its epoch."""
        with self._lock:
            self._requests[endpoint] += 1
            if endpoint == "t2a_v2":
                self._t2a_times.append(time.time())
            return self._epoch

    def enter(self, epoch: int) -> None:
        """A t2a_v2 request started being served."""
        with self._lock:
            if epoch == self._epoch:
                self._in_flight += 1
                self._in_flight_max = max(self._in_flight_max, self._in_flight)

    def leave(self, epoch: int) -> None:
        """A t2a_v2 request finished (whatever the outcome)."""
        with self._lock:
            if epoch == self._epoch:
                self._in_flight -= 1

    def billed(self, characters: int, epoch: int) -> None:
        """Add the usage_characters of a successful synthesis."""
        with self._lock:
            if epoch == self._epoch:
                self._characters += characters

    def made(self, audio: bytes, tone: Sequence[str], epoch: int) -> None:
        """Fingerprint the audio of a successful synthesis (before any fault alters it),
        and keep the pronunciation_dict entries it was read with."""
        with self._lock:
            if epoch == self._epoch:
                digest = hashlib.sha256(audio).hexdigest()
                self._audio.append({"size": len(audio), "sha256": digest})
                self._tones.append(list(tone))

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy, as served by GET /_emulator/stats."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "t2a_timestamps": list(self._t2a_times),
                "in_flight": self._in_flight,
                "in_flight_max": self._in_flight_max,
                "characters": self._characters,
                "audio": [dict(made) for made in self._audio],
                "tones": [list(tone) for tone in self._tones],
            }
