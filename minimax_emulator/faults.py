"""Fault rules: what can go wrong, on which endpoint, how many times.

Why: the production code's retry, back-off, timeout and error mapping can
only be trusted if tests can make MiniMax fail in every way it really does
(error base_resp, HTTP 5xx, slowness, garbage, cut-off bodies, broken
streams, dropped connections) on demand and reproducibly.

Rule shapes (JSON or dict), each with optional "endpoint" (t2a_v2,
files/upload, voice_clone, get_voice, delete_voice or "*"; default "*") and
"times" (default 1; null or 0 = until reset):
  {"kind": "base_resp", "code": 1002, "msg": "..."}   HTTP 200, data null
  {"kind": "http", "status": 502, "body": "...", "headers": {...}}
                                                      no body: a gateway's HTML page, but
                                                      402 and 422 get MiniMax's error
                                                      envelope (below); "envelope": true
                                                      gives any status one
  {"kind": "delay", "seconds": 2.5}                   then answer normally
  {"kind": "malformed"}                               HTTP 200, body not JSON
  {"kind": "truncated"}                               HTTP 200, JSON cut in half
  {"kind": "stream_break", "after_chunks": 2}         SSE only: N events, then drop
  {"kind": "stream_error", "after_chunks": 2, "code": 1000, "msg": "..."}
  {"kind": "disconnect"}                              close without a response
  {"kind": "reply", "body": <any JSON>}               HTTP 200 with exactly this body
  {"kind": "lie", "audio_length": 1000000000}         t2a_v2: a normal answer, but
  {"kind": "lie", "extra_info": {"audio_sample_rate": "abc"}}   extra_info says this
  {"kind": "lie", "omit": ["audio_length"]}           (merged, omitted keys dropped;
                                                      streams: the final event)
  {"kind": "audio_bytes", "hex": "00ff"}              t2a_v2: a normal answer whose
                                                      data.audio is this string verbatim
                                                      (need not be hex; streams: it is
                                                      the one audio chunk)
  {"kind": "stream_event", "event": <any JSON>, "after_chunks": 2}
                                                      SSE only: this event after N audio
                                                      chunks, then the stream goes on
  {"kind": "stream_unterminated", "ending": ""}       SSE only: the final event's data
                                                      line ends the stream, followed by
                                                      `ending` (nothing, or one newline
                                                      with "ending": "\\n"), never by its
                                                      blank line
  {"kind": "stream_tail"}                             SSE only: the last audio piece is
                                                      kept back from the chunks; the final
                                                      event carries it (with
                                                      exclude_aggregated_audio; without,
                                                      the whole audio as always), and
                                                      audio_size is the whole audio's
  {"kind": "stream_json"}                             a stream request answered with one
                                                      JSON body: the non-streaming reply
  {"kind": "clone_lost", "then": "disconnect"}        voice_clone only: the clone IS made
  {"kind": "clone_lost", "then": "http", "status": 502}   (and a preview billed), then the
  {"kind": "clone_lost", "then": "base_resp", "code": 1000}   reply is lost: the socket
  {"kind": "clone_lost", "then": "timeout", "seconds": 5}     closes, a 5xx or a 1000-type
                                                      code comes instead, or the reply
                                                      comes only after the client gave up
  {"kind": "sensitive", "type": 3, "shape": "bool"}   voice_clone only: base_resp success
                                                      but the sample is flagged and no
                                                      clone is made; "bool" answers
                                                      input_sensitive true plus
                                                      input_sensitive_type, "object"
                                                      input_sensitive {"type": N} (the
                                                      API reference shows both)
Rules are matched in registration order and the first match wins. The
stream_* kinds only match streaming t2a_v2 requests, lie and audio_bytes
only t2a_v2 requests, clone_lost and sensitive only voice_clone requests;
other requests pass them by without using them up. lie, audio_bytes, reply
and stream_event exist to test a client's reply validation: what MiniMax's
API does not document, sent on demand. stream_unterminated, stream_tail and
stream_json are what MiniMax may do within its documentation (the SSE spec
ends an event at the end of the stream too; the docs leave the final event's
audio open under exclude_aggregated_audio; MiniMax's own CLI accepts a JSON
reply to a stream request), which a faithful client must take. clone_lost
exists because voice_clone is not idempotent: a client that retries it
blindly meets 2039 (id in use) for a clone that exists but that it never
heard of.

MiniMax's error envelope (HTTP 402 and 422 in MiniMax's own CLI, which reads
it): {"error": {"type": "insufficient_balance_error" | "unprocessable_entity_
error" | ..., "message": "...", "http_code": "402"}}, with a Trace-Id header;
"error_type", "message" and "code" (a number added as error.code) override.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLONE_KINDS",
    "CLONE_LOST_THEN",
    "ENDPOINTS",
    "HANDLER_KINDS",
    "KINDS",
    "STREAM_KINDS",
    "T2A_KINDS",
    "FaultBook",
    "FaultRule",
    "parse_rule",
]

ENDPOINTS = frozenset({"t2a_v2", "files/upload", "voice_clone", "get_voice", "delete_voice", "*"})
KINDS = frozenset(
    {
        "base_resp",
        "http",
        "delay",
        "malformed",
        "truncated",
        "stream_break",
        "stream_error",
        "disconnect",
        "reply",
        "lie",
        "audio_bytes",
        "stream_event",
        "stream_unterminated",
        "stream_tail",
        "stream_json",
        "clone_lost",
        "sensitive",
    }
)
STREAM_KINDS = frozenset(
    {
        "stream_break",
        "stream_error",
        "stream_event",
        "stream_unterminated",
        "stream_tail",
        "stream_json",
    }
)
T2A_KINDS = frozenset({"lie", "audio_bytes"})
CLONE_KINDS = frozenset({"clone_lost", "sensitive"})
# Carried out by the t2a or voice_clone handler (or the SSE writer), not by the front door.
HANDLER_KINDS = STREAM_KINDS | T2A_KINDS | CLONE_KINDS
CLONE_LOST_THEN = frozenset({"disconnect", "http", "base_resp", "timeout"})
# What each kind cannot do without.
_REQUIRED = {"reply": "body", "audio_bytes": "hex", "stream_event": "event"}


@dataclass
class FaultRule:
    """One registered fault; `remaining` None means it never runs out."""

    kind: str
    endpoint: str = "*"
    remaining: int | None = 1
    options: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A kind-specific option such as code, status, seconds, after_chunks."""
        return self.options.get(key, default)

    def matches(self, endpoint: str, streaming: bool) -> bool:
        """Whether this rule applies to a request on endpoint."""
        if self.endpoint not in ("*", endpoint):
            return False
        if self.kind in T2A_KINDS:
            return endpoint == "t2a_v2"
        if self.kind in CLONE_KINDS:
            return endpoint == "voice_clone"
        return self.kind not in STREAM_KINDS or (endpoint == "t2a_v2" and streaming)


def _check_options(kind: str, raw: dict[str, Any]) -> None:
    """The options a kind needs are there and of the right type."""
    needed = _REQUIRED.get(kind)
    if needed is not None and needed not in raw:
        raise ValueError(f"a {kind} fault needs {needed!r}")
    if kind == "audio_bytes" and not isinstance(raw["hex"], str):
        raise ValueError("hex must be a string")
    if kind == "lie" and not (
        "audio_length" in raw or isinstance(raw.get("extra_info"), dict) or "omit" in raw
    ):
        raise ValueError("a lie fault needs 'audio_length', an 'extra_info' object or 'omit'")
    omit = raw.get("omit", [])
    if kind == "lie" and not (isinstance(omit, list) and all(isinstance(k, str) for k in omit)):
        raise ValueError("omit must be a list of extra_info keys")
    if kind == "stream_unterminated" and raw.get("ending", "") not in ("", "\n"):
        raise ValueError('ending must be "" or "\\n"')
    if kind == "clone_lost" and raw.get("then", "disconnect") not in CLONE_LOST_THEN:
        raise ValueError(f"then must be one of {sorted(CLONE_LOST_THEN)}")
    if kind == "sensitive" and raw.get("shape", "bool") not in ("bool", "object"):
        raise ValueError("shape must be bool or object")


def parse_rule(raw: Any) -> FaultRule:
    """Validate a rule dict; raises ValueError with a readable reason."""
    if not isinstance(raw, dict):
        raise ValueError("a fault rule must be a JSON object")
    kind, endpoint = raw.get("kind"), raw.get("endpoint", "*")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
    _check_options(kind, raw)
    times = raw.get("times", 1)
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 0):
        raise ValueError("times must be a non-negative integer or null")
    options = {k: v for k, v in raw.items() if k not in ("kind", "endpoint", "times")}
    return FaultRule(kind, endpoint, times or None, options)


class FaultBook:
    """Thread-safe ordered list of pending fault rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Register a rule after all existing ones."""
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Drop every rule."""
        with self._lock:
            self._rules.clear()

    def pending(self) -> int:
        """How many rules are still registered."""
        with self._lock:
            return len(self._rules)

    def take(self, endpoint: str, streaming: bool = False) -> FaultRule | None:
        """The first rule matching this request, using up one of its times."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(endpoint, streaming):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
        return None
