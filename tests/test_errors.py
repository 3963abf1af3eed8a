"""The error tree is a public contract: stable codes, statuses, and one wire format."""

from __future__ import annotations

import inspect
import json

import pytest

from odeatts import errors
from odeatts.errors import ERROR_CODES, OdeaError

# The codes documented to callers. Renaming one breaks every client that matches on it.
DOCUMENTED_CODES = {
    "invalid_request",
    "unauthorized",
    "quota_exceeded",
    "voice_not_found",
    "duplicate_job",
    "content_rejected",
    "rate_limited",
    "concurrency_limited",
    "upstream_busy",
    "upstream_rejected",
    "upstream_unavailable",
    "service_unavailable",
    "internal",
}

LEAVES = sorted(ERROR_CODES.values(), key=lambda cls: cls.code)


def _leaves(cls: type[OdeaError]) -> list[type[OdeaError]]:
    subs = cls.__subclasses__()
    return [cls] if not subs else [leaf for sub in subs for leaf in _leaves(sub)]


def test_codes_are_exactly_the_documented_set() -> None:
    assert set(ERROR_CODES) == DOCUMENTED_CODES


def test_every_leaf_has_its_own_code() -> None:
    # ERROR_CODES is a dict keyed by code: two leaves sharing a code would hide one of them.
    leaves = [leaf for leaf in _leaves(OdeaError) if leaf.__module__ == errors.__name__]
    assert len({leaf.code for leaf in leaves}) == len(leaves)
    assert set(ERROR_CODES.values()) == set(leaves)
    assert all(ERROR_CODES[leaf.code] is leaf for leaf in leaves)


@pytest.mark.parametrize("cls", LEAVES, ids=lambda cls: cls.code)
def test_leaf_has_status_message_and_is_an_odea_error(cls: type[OdeaError]) -> None:
    assert issubclass(cls, OdeaError)
    assert isinstance(cls.status, int) and 400 <= cls.status <= 599
    assert isinstance(cls.retryable, bool)
    assert cls.default_message.strip()


@pytest.mark.parametrize("cls", LEAVES, ids=lambda cls: cls.code)
def test_to_wire_is_json_with_code_message_status(cls: type[OdeaError]) -> None:
    wire = cls().to_wire()
    assert isinstance(wire, str)
    body = json.loads(wire)
    assert body == {"code": cls.code, "message": cls.default_message, "status": cls.status}
    assert "retry_after" not in body


@pytest.mark.parametrize("cls", LEAVES, ids=lambda cls: cls.code)
def test_retry_after_only_when_set_and_never_negative(cls: type[OdeaError]) -> None:
    assert json.loads(cls("later", retry_after=2.5).to_wire())["retry_after"] == 2.5
    assert json.loads(cls(retry_after=-3.0).to_wire())["retry_after"] == 0
    assert json.loads(cls(retry_after=0.0).to_wire())["retry_after"] == 0


def test_custom_message_and_details_travel_on_the_wire() -> None:
    exc = errors.InvalidRequest("`speed` is too fast.", details={"field": "speed"})
    body = json.loads(exc.to_wire())
    assert body["message"] == "`speed` is too fast." and body["field"] == "speed"
    assert str(exc) == "`speed` is too fast."


def test_status_codes_of_the_families() -> None:
    assert errors.InvalidRequest.status == 400 and errors.Unauthorized.status == 401
    assert errors.QuotaExceeded.status == 402 and errors.VoiceNotFound.status == 404
    assert errors.DuplicateJob.status == 409 and errors.ContentRejected.status == 422
    assert {
        cls.status for cls in (errors.RateLimited, errors.ConcurrencyLimited, errors.UpstreamBusy)
    } == {429}
    assert errors.UpstreamRejected.status == 502 and errors.InternalError.status == 500
    assert errors.UpstreamUnavailable.status == errors.ServiceUnavailable.status == 503


def test_throttled_is_retryable_and_caller_errors_are_not() -> None:
    assert all(cls.retryable for cls in LEAVES if issubclass(cls, errors.Throttled))
    assert not any(cls.retryable for cls in LEAVES if issubclass(cls, errors.CallerError))


def test_all_lists_every_class() -> None:
    classes = {
        name
        for name, obj in inspect.getmembers(errors, inspect.isclass)
        if obj.__module__ == errors.__name__
    }
    assert classes <= set(errors.__all__)
    assert "ERROR_CODES" in errors.__all__ and len(set(errors.__all__)) == len(errors.__all__)
    assert all(hasattr(errors, name) for name in errors.__all__)
