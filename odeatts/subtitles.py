"""Word timings: MiniMax's subtitle file, fetched safely and read strictly.

With ``subtitle_enable`` a t2a_v2 reply carries ``data.subtitle_file``: the URL of a
JSON file, a flat list of segments ``{"text", "time_begin", "time_end"}`` in
milliseconds from the start of that reply's audio (docs/minimax.md, "Subtitles").

The URL comes from outside, so it is not fetched blindly (server-side request
forgery): only ``https``, or plain ``http`` to the very host our MiniMax base URL
names (the emulator on loopback); never a literal private, loopback or link-local
address on any other host; no redirects followed; no credentials sent; at most
``MAX_BYTES`` read. A file that breaks any of this, or is not the documented shape,
is MiniMax's failure (``upstream_unavailable``), never ours. Names that resolve to
private addresses are not checked here: MiniMax's CDN hosts are public names.

A long text is synthesised in parts; ``offset_timings`` puts each part's timings on
the clock of the joined audio, shifting them by the real lengths of the parts before.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from odeatts.errors import UpstreamUnavailable

__all__ = [
    "MAX_BYTES",
    "TIMEOUT_SECONDS",
    "SubtitleFetcher",
    "Timing",
    "check_url",
    "offset_timings",
    "parse_subtitles",
]

log = logging.getLogger(__name__)

# A word-level file for 10,000 characters is about 2,000 entries of 60 bytes: 120 KB.
MAX_BYTES = 2 * 1024 * 1024
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Timing:
    text: str
    start_ms: float
    end_ms: float


class _Segment(BaseModel):
    """One entry of the file. Other keys (MiniMax may add character offsets) pass."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    text: str
    time_begin: float = Field(ge=0)
    time_end: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> _Segment:
        if self.time_end < self.time_begin:
            raise ValueError("time_end before time_begin")
        return self


_FILE: TypeAdapter[list[_Segment]] = TypeAdapter(list[_Segment])


def parse_subtitles(body: bytes) -> list[Timing]:
    """The documented file, or ValueError saying where it is not (never its text)."""
    try:
        segments = _FILE.validate_json(body)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['type']}"
            for e in exc.errors(include_url=False, include_input=False)[:3]
        )
        raise ValueError(where) from None
    return [Timing(s.text, s.time_begin, s.time_end) for s in segments]


def check_url(url: str, minimax_host: str | None) -> None:
    """Raise ValueError unless ``url`` may be fetched (see the module's docstring)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise ValueError("no host, or credentials in the URL")
    if host == minimax_host and parts.scheme in ("http", "https"):
        return
    if parts.scheme != "https":
        raise ValueError(f"scheme {parts.scheme!r} on a host other than MiniMax's")
    address = _address(host)
    if address is not None and not address.is_global:
        raise ValueError("a private, loopback or link-local address")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal host names, or None for a name. The resolver also reads
    IPv4 in its short and numeric spellings (``127.1``, ``2130706433``, ``0x7f.0.0.1``,
    octal): inet_aton's rules, so those are addresses too."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _host(url: str) -> str | None:
    """The URL's host for the log, or None where even that cannot be read."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def offset_timings(
    parts: Sequence[Sequence[Timing]], durations_ms: Sequence[int]
) -> list[dict[str, Any]]:
    """The parts' timings on the joined audio's clock: part ``i`` starts after the real
    lengths of parts ``0..i-1``. Seconds, to the millisecond. A time past its part's
    end (MiniMax rounds its milliseconds; we measure to the sample) is its part's end,
    so a part's words never overlap the next part's."""
    out: list[dict[str, Any]] = []
    start = 0
    for timings, duration in zip(parts, durations_ms, strict=True):
        out.extend(
            {
                "text": t.text,
                "start_seconds": round((start + min(t.start_ms, duration)) / 1000, 3),
                "end_seconds": round((start + min(t.end_ms, duration)) / 1000, 3),
            }
            for t in timings
        )
        start += duration
    return out


class SubtitleFetcher:
    """GETs subtitle files. ``http`` is injected (the test seam); it must not follow
    redirects and carries no credentials of ours."""

    def __init__(self, http: httpx.AsyncClient, *, minimax_base_url: str) -> None:
        self._http = http
        self._minimax_host = (urlsplit(minimax_base_url).hostname or "").lower() or None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, url: str, *, request_id: str) -> list[Timing]:
        """The file's timings; ``UpstreamUnavailable`` for anything else."""
        try:
            check_url(url, self._minimax_host)
            body = await self._get(url)
            return parse_subtitles(body)
        except (ValueError, httpx.HTTPError, httpx.InvalidURL) as exc:
            log.warning(
                "minimax subtitle file refused: %s (request %s, host %s)",
                exc if isinstance(exc, ValueError) else type(exc).__name__,
                request_id,
                _host(url),
            )
            raise UpstreamUnavailable() from exc

    async def _get(self, url: str) -> bytes:
        data = bytearray()
        async with self._http.stream("GET", url, follow_redirects=False) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_BYTES:
                    raise ValueError(f"over {MAX_BYTES} bytes")
        return bytes(data)
