"""MiniMax's response conventions: base_resp, trace ids, error bodies.

Why: MiniMax answers most errors with HTTP 200 and a non-zero
base_resp.status_code, tags every answer with a 32-hex trace id (body
`trace_id` and header `Trace-Id`), and leaves the payload field null on
error. Keeping that in one place keeps every endpoint consistent.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

__all__ = [
    "LOGIN_FAIL",
    "ApiError",
    "base_resp",
    "error_body",
    "json_response",
    "message_for",
    "new_trace_id",
    "read_json",
]

LOGIN_FAIL = (
    "login fail: Please carry the API secret key in the 'Authorization' field of the request header"
)
_MESSAGES = {
    1000: "unknown error",
    1001: "request timeout",
    1002: "rate limit exceeded(RPM)",
    1004: LOGIN_FAIL,
    1008: "insufficient balance",
    1013: "internal service error",
    1024: "internal error",
    1028: "insufficient quota",
    1030: "insufficient quota or balance",
    1033: "system error",
    1026: "input new_sensitive",
    1027: "output new_sensitive",
    1039: "rate limit exceeded(TPM)",
    1041: "conn limit",
    1042: "invisible character ratio exceeds limit",
    2013: "invalid params",
    2045: "rate growth limit",
    2049: "invalid api key",
    2056: "usage limit exceeded, 5-hour usage limit reached",
    2061: "your current token plan not support model",
}
# What each endpoint carries (as null/empty) next to base_resp on error.
_ERROR_PAYLOAD: dict[str, dict[str, Any]] = {
    "t2a_v2": {"data": None},
    "files/upload": {"file": None},
    "voice_clone": {"demo_audio": "", "input_sensitive": False},
    "get_voice": {},
    "delete_voice": {},
}


class ApiError(Exception):
    """A MiniMax business error: answered as HTTP 200 with this base_resp."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


def message_for(code: int) -> str:
    """A plausible MiniMax status_msg for code."""
    return _MESSAGES.get(code, "error")


def base_resp(code: int = 0, msg: str = "success") -> dict[str, Any]:
    """The base_resp object."""
    return {"status_code": code, "status_msg": msg}


def new_trace_id() -> str:
    """A fresh 32-hex-digit trace id."""
    return secrets.token_hex(16)


def error_body(endpoint: str, code: int, msg: str, trace_id: str) -> dict[str, Any]:
    """The body MiniMax sends for an error on endpoint."""
    return {
        **_ERROR_PAYLOAD.get(endpoint, {}),
        "trace_id": trace_id,
        "base_resp": base_resp(code, msg),
    }


def json_response(payload: dict[str, Any], trace_id: str, status: int = 200) -> web.Response:
    """A JSON answer carrying the Trace-Id header."""
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode(),
        content_type="application/json",
        charset="utf-8",
        headers={"Trace-Id": trace_id},
    )


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; ApiError 2013 if it is not JSON."""
    try:
        return json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(2013, "invalid params, request body is not valid JSON") from exc
