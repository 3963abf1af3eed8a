"""Everything one emulator instance knows, in one object.

Why: the HTTP handlers, the /_emulator control endpoints and the Python-side
Emulator helpers (which run on another thread) must all see and change the
same faults, stats, voices and settings.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, fields
from typing import Any

from aiohttp import web

from minimax_emulator.faults import FaultBook, FaultRule
from minimax_emulator.stats import Stats
from minimax_emulator.voices import VoiceStore

__all__ = [
    "FAULT_KEY",
    "STATE_KEY",
    "TRACE_KEY",
    "TUNABLE",
    "EmulatorState",
    "HostedFiles",
    "Settings",
]

TUNABLE = ("latency_seconds", "per_char_latency_seconds", "chunk_delay_seconds")


@dataclass
class Settings:
    """Who may call, and how slow the emulator pretends to be."""

    api_key: str = "emulator-key"
    group_id: str | None = None
    latency_seconds: float = 0.0
    per_char_latency_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0


class HostedFiles:
    """Audio served at /_emulator/files/<token> (output_format=url, clone demos)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[bytes, str]] = {}

    def put(self, data: bytes, content_type: str) -> str:
        """Store data and return its token."""
        token = secrets.token_hex(16)
        with self._lock:
            self._files[token] = (data, content_type)
        return token

    def get(self, token: str) -> tuple[bytes, str] | None:
        """(data, content type) for a token, if stored."""
        with self._lock:
            return self._files.get(token)

    def clear(self) -> None:
        """Forget every hosted file."""
        with self._lock:
            self._files.clear()


class EmulatorState:
    """Settings, faults, stats, voices and hosted files of one emulator."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.faults = FaultBook()
        self.stats = Stats()
        self.voices = VoiceStore()
        self.hosted = HostedFiles()

    def reset(self) -> None:
        """Clear faults, stats, clones, uploads and hosted files (settings stay)."""
        self.faults.clear()
        self.stats.reset()
        self.voices.reset()
        self.hosted.clear()

    def configure(self, **values: Any) -> dict[str, float]:
        """Change latency settings at run time; returns the new values."""
        unknown = set(values) - set(TUNABLE)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; expected {list(TUNABLE)}")
        for name, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
        for name, value in values.items():
            setattr(self.settings, name, float(value))
        return {
            f.name: getattr(self.settings, f.name)
            for f in fields(self.settings)
            if f.name in TUNABLE
        }


STATE_KEY = web.AppKey("minimax_emulator.state", EmulatorState)
TRACE_KEY = web.RequestKey("minimax_emulator.trace_id", str)
# A matched rule the t2a handler (or its SSE writer) carries out.
FAULT_KEY = web.RequestKey("minimax_emulator.fault", FaultRule)
# The stats epoch the request arrived in (Stats.reset): what it counts, it counts there.
EPOCH_KEY = web.RequestKey("minimax_emulator.stats_epoch", int)
