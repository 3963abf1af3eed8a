"""MiniMax's failures, row by row: each documented status code and HTTP status becomes
one caller error, is retried or not, and alerts operators or not.

``EXPECTED`` is the specification, written from MiniMax's published code list
(platform.minimax.io/docs/api-reference/errorcode), its own CLI (MiniMax-AI/cli
``src/errors/api.ts``) and docs/minimax.md; it is deliberately not imported from
``odeatts.minimax``, whose ``UPSTREAM_FAILURES`` must agree with it row for row.
Account problems (balance, quota, plan, key) are ``service_unavailable`` for callers,
never retried, and ONE error line for operators starting "ALERT minimax account:".
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from odeatts.errors import OdeaError
from odeatts.minimax import MiniMaxClient, SpeechParams, map_base_resp

TRACE = "0123456789abcdef0123456789abcdef"
PARAMS = SpeechParams(text="Hello.", voice_id="English_Ours_7", model="speech-2.8-turbo")
ACCOUNT = "ALERT minimax account:"

# code: (caller error code, retried?, alert: "account" | "voice" | None)
EXPECTED_BASE_RESP: dict[int, tuple[str, bool, str | None]] = {
    1000: ("upstream_unavailable", True, None),  # unknown error
    1001: ("upstream_unavailable", True, None),  # request timeout
    1002: ("upstream_busy", True, None),  # rate limit (RPM)
    1004: ("service_unavailable", False, "account"),  # not authorized / key not of group
    1008: ("service_unavailable", False, "account"),  # insufficient balance
    1013: ("upstream_unavailable", True, None),  # internal service error
    1024: ("upstream_unavailable", True, None),  # internal error
    1026: ("content_rejected", False, None),  # input flagged
    1027: ("content_rejected", False, None),  # output flagged
    1028: ("service_unavailable", False, "account"),  # quota used up
    1030: ("service_unavailable", False, "account"),  # quota / balance used up
    1033: ("upstream_unavailable", True, None),  # system / downstream error
    1039: ("upstream_busy", True, None),  # TPM limit
    1041: ("upstream_busy", True, None),  # connection limit
    1042: ("invalid_request", False, None),  # invisible characters over 10%
    1043: ("upstream_rejected", False, None),  # clone validation (ASR similarity)
    1044: ("upstream_rejected", False, None),  # clone validation (prompt similarity)
    2013: ("invalid_request", False, None),  # invalid params
    20132: ("voice_not_found", False, "voice"),  # invalid samples or voice_id
    2037: ("upstream_rejected", False, None),  # clone sample length
    2038: ("upstream_rejected", False, None),  # cloning needs a verified account
    2039: ("upstream_rejected", False, None),  # clone voice_id in use
    2042: ("voice_not_found", False, "voice"),  # no access to the voice_id
    2045: ("upstream_busy", True, None),  # rate growth limit
    2048: ("upstream_rejected", False, None),  # prompt audio too long
    2049: ("service_unavailable", False, "account"),  # invalid API key / wrong region host
    2056: ("service_unavailable", False, "account"),  # plan usage window (hours) spent
    2061: ("service_unavailable", False, "account"),  # model not in the account's plan
    9999: ("upstream_rejected", False, None),  # a code nobody documented
}

# HTTP status: (caller error code, attempts with max_retries=2, alert)
EXPECTED_HTTP: dict[int, tuple[str, int, str | None]] = {
    400: ("upstream_rejected", 1, None),
    401: ("service_unavailable", 1, "account"),
    402: ("service_unavailable", 1, "account"),
    403: ("service_unavailable", 1, "account"),
    404: ("upstream_rejected", 1, None),
    408: ("upstream_unavailable", 3, None),
    422: ("content_rejected", 1, None),
    429: ("upstream_busy", 3, None),
    500: ("upstream_unavailable", 3, None),
    502: ("upstream_unavailable", 3, None),
    503: ("upstream_unavailable", 3, None),
    504: ("upstream_unavailable", 3, None),
    529: ("upstream_unavailable", 3, None),
}


async def _no_sleep(_: float) -> None:
    return None


def client(handler: Any) -> MiniMaxClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://minimax.test")
    return MiniMaxClient(http, api_key="k", max_retries=2, sleep=_no_sleep)


class Answer:
    """Every request answered with this status and body; counts them."""

    def __init__(self, status: int, body: Any, *, content_type: str = "application/json") -> None:
        self.status, self.calls, self.content_type = status, 0, content_type
        self.content = body if isinstance(body, bytes) else json.dumps(body).encode()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(
            self.status,
            content=self.content,
            headers={"content-type": self.content_type, "Trace-Id": TRACE},
        )


def alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.getMessage().startswith("ALERT")
    ]


@pytest.mark.parametrize(("code", "expected"), sorted(EXPECTED_BASE_RESP.items()))
def test_each_status_code_maps_to_its_row(
    code: int, expected: tuple[str, bool, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    error_code, retried, alert = expected
    failure = map_base_resp(code, "status text")
    assert failure.error.code == error_code
    assert failure.retry is retried
    lines = alerts(caplog)
    if alert is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(f"ALERT minimax {alert}:"), lines
        assert str(code) in lines[0]


@pytest.mark.parametrize(("status", "expected"), sorted(EXPECTED_HTTP.items()))
async def test_each_http_status_maps_to_its_row(
    status: int, expected: tuple[str, int, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    error_code, attempts, alert = expected
    answer = Answer(status, b"<html><body>gateway says no</body></html>", content_type="text/html")
    with pytest.raises(OdeaError) as failure:
        await client(answer).synthesize(PARAMS, request_id="req-1")
    assert failure.value.code == error_code
    assert answer.calls == attempts
    lines = alerts(caplog)
    if alert is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(f"ALERT minimax {alert}:"), lines


def test_the_table_in_the_code_is_this_table() -> None:
    """Every row of ``UPSTREAM_FAILURES`` is specified here, and the other way round."""
    from odeatts.minimax import UPSTREAM_FAILURES

    codes = {row.code for row in UPSTREAM_FAILURES if not row.http}
    statuses = {row.code for row in UPSTREAM_FAILURES if row.http}
    assert codes == set(EXPECTED_BASE_RESP) - {9999}
    assert statuses <= set(EXPECTED_HTTP)
    for row in UPSTREAM_FAILURES:
        assert row.meaning and row.source, row
        expected = (EXPECTED_HTTP if row.http else EXPECTED_BASE_RESP)[row.code]
        assert (row.error.code, row.alert) == (expected[0], expected[2]), row


ENVELOPES = {
    "402 balance": (
        402,
        {
            "error": {
                "type": "insufficient_balance_error",
                "message": "insufficient balance, Bearer sk-live-1234567890",
                "http_code": "402",
            }
        },
        "service_unavailable",
        "insufficient_balance_error",
    ),
    "422 content": (
        422,
        {
            "error": {
                "type": "unprocessable_entity_error",
                "message": "input new_sensitive (1026) " + "x" * 400,
                "http_code": "422",
            }
        },
        "content_rejected",
        "unprocessable_entity_error",
    ),
    "500 base_resp": (
        500,
        {"base_resp": {"status_code": 1000, "status_msg": "unknown error on mm-internal-7"}},
        "upstream_unavailable",
        "1000",
    ),
}


@pytest.mark.parametrize(
    ("status", "body", "error_code", "logged"), ENVELOPES.values(), ids=ENVELOPES.keys()
)
async def test_the_body_of_a_non_200_is_logged_redacted_never_sent_to_the_caller(
    status: int,
    body: dict[str, Any],
    error_code: str,
    logged: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(OdeaError) as failure:
        await client(Answer(status, body)).synthesize(PARAMS, request_id="req-1")
    assert failure.value.code == error_code
    wire = failure.value.to_wire()
    assert "sk-live" not in wire and "new_sensitive" not in wire and "mm-internal" not in wire
    line = next(r.getMessage() for r in caplog.records if f"HTTP {status}" in r.getMessage())
    assert logged in line and TRACE in line and "req-1" in line
    assert "sk-live-1234567890" not in caplog.text and "x" * 201 not in caplog.text


async def test_a_known_code_in_the_envelope_decides_over_the_status() -> None:
    """A 429 that says the plan's window of hours is spent is not worth a retry."""
    answer = Answer(
        429,
        {"base_resp": {"status_code": 2056, "status_msg": "usage limit exceeded, 5-hour window"}},
    )
    with pytest.raises(OdeaError) as failure:
        await client(answer).synthesize(PARAMS, request_id="req-1")
    assert failure.value.code == "service_unavailable"
    assert answer.calls == 1
