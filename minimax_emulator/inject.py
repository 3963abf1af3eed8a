"""Turn a matched fault rule into what goes on the wire.

Why: faults.py decides WHICH rule applies; this module decides how each kind
looks to a client: an error base_resp, an HTTP error page (or MiniMax's error
envelope), a delay, a body that is not JSON, JSON cut in half, any JSON body at
all, or a socket closed with no answer. The stream_*, lie and audio_bytes kinds
are acted on by the t2a handler and its SSE writer instead (t2a.py,
streaming.py), clone_lost and sensitive by the voice_clone handler (cloning.py).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

from minimax_emulator.faults import FaultRule
from minimax_emulator.protocol import base_resp, error_body, json_response, message_for

__all__ = ["ENVELOPES", "apply_fault", "envelope"]


# What MiniMax's error envelope says for a status (type, message), as its CLI reads it.
ENVELOPES = {
    400: ("invalid_request_error", "invalid params"),
    401: ("authentication_error", "invalid api key"),
    402: ("insufficient_balance_error", "insufficient balance"),
    422: ("unprocessable_entity_error", "input new_sensitive: sensitive content detected"),
    429: ("rate_limit_error", "rate limit exceeded"),
}


def envelope(rule: FaultRule, status: int) -> dict[str, Any]:
    """MiniMax's {"error": {...}} body for an HTTP error."""
    kind, message = ENVELOPES.get(status, ("api_error", "error"))
    error: dict[str, Any] = {
        "type": rule.get("error_type", kind),
        "message": rule.get("message", message),
        "http_code": str(status),
    }
    if rule.get("code") is not None:
        error["code"] = rule.get("code")
    return {"error": error}


def _http(rule: FaultRule, trace_id: str) -> web.Response:
    """An HTTP error status with a gateway-like, MiniMax-envelope or the given body."""
    status = int(rule.get("status", 502))
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body: Any = rule.get("body")
    content_type = "text/html"
    headers = dict(rule.get("headers") or {})
    if body is None and (rule.get("envelope") or status in (402, 422)):
        body = envelope(rule, status)
        headers.setdefault("Trace-Id", trace_id)
    if body is None:
        title = f"{status} {reason}"
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    elif not isinstance(body, str):
        body, content_type = json.dumps(body), "application/json"
    return web.Response(
        status=status,
        text=body,
        content_type=rule.get("content_type", content_type),
        headers=headers,
    )


def _plausible(endpoint: str, trace_id: str) -> dict[str, Any]:
    """A success-looking body for endpoint, to be cut in half."""
    if endpoint != "t2a_v2":
        return {"file": None, "trace_id": trace_id, "base_resp": base_resp()}
    return {
        "data": {"audio": "fffb9064" + "00" * 2000, "status": 2},
        "extra_info": {
            "audio_length": 1000,
            "audio_sample_rate": 32000,
            "audio_size": 1004,
            "bitrate": 128000,
            "audio_format": "mp3",
            "audio_channel": 1,
        },
        "trace_id": trace_id,
        "base_resp": base_resp(),
    }


def _raw(body: bytes, trace_id: str, content_type: str = "application/json") -> web.Response:
    return web.Response(body=body, content_type=content_type, headers={"Trace-Id": trace_id})


def _disconnect(request: web.Request) -> web.Response:
    """Drop the connection; the returned response is never sent."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response()


async def apply_fault(
    request: web.Request, rule: FaultRule, endpoint: str, trace_id: str
) -> web.StreamResponse | None:
    """The faulty answer for this request, or None to go on serving it normally."""
    kind = rule.kind
    if kind == "delay":
        await asyncio.sleep(float(rule.get("seconds", 1.0)))
        return None
    if kind == "base_resp":
        code = int(rule.get("code", 1000))
        body = error_body(endpoint, code, rule.get("msg") or message_for(code), trace_id)
        return json_response(body, trace_id)
    if kind == "http":
        return _http(rule, trace_id)
    if kind == "malformed":
        body = rule.get("body", "<html><body>upstream returned something odd</body></html>")
        return _raw(body.encode(), trace_id, rule.get("content_type", "application/json"))
    if kind == "truncated":
        full = json.dumps(_plausible(endpoint, trace_id)).encode()
        return _raw(full[: len(full) // 2], trace_id)
    if kind == "disconnect":
        return _disconnect(request)
    if kind == "reply":
        return _raw(json.dumps(rule.get("body")).encode(), trace_id)
    return None
