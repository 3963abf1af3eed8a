"""The client's error tree against the worker's: every code OdeaTTS can send becomes the
client class of that code, with its status, retry_after and details (no I/O)."""

from __future__ import annotations

import json

import odeatts_client
import pytest
from odeatts_client import (
    InvalidRequest,
    JobFailed,
    OdeaTTSError,
    RateLimited,
    Throttled,
    from_wire,
)

from odeatts import errors


def caller_errors() -> list[type[errors.OdeaError]]:
    """Every concrete error the worker can put in a job's ``error``."""
    found, todo = [], [errors.OdeaError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if not cls.__subclasses__():
            found.append(cls)
    return found


@pytest.mark.parametrize("server", caller_errors(), ids=lambda cls: cls.code)
def test_every_code_the_worker_sends_has_its_class(server: type[errors.OdeaError]) -> None:
    sent = server(retry_after=1.5, details={"field": "voice"})
    raised = from_wire(sent.to_wire(), request_id="job-1")
    assert type(raised).__name__ == server.__name__, f"no client class for {server.code}"
    assert (raised.code, raised.status, raised.message) == (
        server.code,
        server.status,
        sent.message,
    )
    assert raised.retry_after == 1.5 and raised.field == "voice"
    assert raised.request_id == "job-1" and "job-1" in str(raised)
    assert isinstance(raised, Throttled) == isinstance(sent, errors.Throttled)


def test_details_travel_and_known_fields_do_not_repeat() -> None:
    wire = json.dumps(
        {
            "code": "rate_limited",
            "message": "Slow down.",
            "status": 429,
            "retry_after": 12.5,
            "limit": 10,
        }
    )
    raised = from_wire(wire)
    assert isinstance(raised, RateLimited)
    assert raised.retry_after == 12.5 and raised.details == {"limit": 10}


def test_a_code_this_version_does_not_know_still_carries_it() -> None:
    raised = from_wire('{"code": "new_code", "message": "Something new.", "status": 418}')
    assert type(raised) is OdeaTTSError
    assert (raised.code, raised.status, raised.message) == ("new_code", 418, "Something new.")


@pytest.mark.parametrize(
    "error", ["Job ID not found", None, '["not", "an object"]', "{broken", {"no": "code"}]
)
def test_anything_else_is_a_failed_job(error: object) -> None:
    raised = from_wire(error, request_id="job-2")
    assert isinstance(raised, JobFailed) and raised.code == "runpod_failed"
    assert raised.request_id == "job-2"


def test_an_error_object_is_read_as_the_string_would_be() -> None:
    raised = from_wire({"code": "invalid_request", "message": "Bad.", "field": "speed"})
    assert isinstance(raised, InvalidRequest) and raised.field == "speed"


def test_the_public_surface() -> None:
    assert set(odeatts_client.__all__) == {
        name for name in dir(odeatts_client) if not name.startswith("_")
    }
