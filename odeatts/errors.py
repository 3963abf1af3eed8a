"""The one exception tree of OdeaTTS; only the edge turns it into wire format.

    OdeaError                      every failure a caller can meet; never carries internals
    ├── CallerError                the caller can fix it; retrying the same job will not help
    │   ├── InvalidRequest         400 invalid_request: a field is missing or out of range
    │   ├── Unauthorized           401 unauthorized: key missing, unknown, revoked or user inactive
    │   ├── QuotaExceeded          402 quota_exceeded: the job would not fit in what is left
    │   ├── VoiceNotFound          404 voice_not_found: no active voice by that name
    │   ├── DuplicateJob           409 duplicate_job: this job id was already charged
    │   └── ContentRejected        422 content_rejected: MiniMax flagged the text or the audio
    ├── Throttled                  429: try again after ``retry_after`` seconds
    │   ├── RateLimited            rate_limited: the plan's requests per minute are spent
    │   ├── ConcurrencyLimited     concurrency_limited: the plan's concurrent streams are busy
    │   └── UpstreamBusy           upstream_busy: our MiniMax account is at its own limit
    └── ServiceError               our side or MiniMax's; the caller did nothing wrong
        ├── UpstreamRejected       502 upstream_rejected: MiniMax refused a request we built
        ├── UpstreamUnavailable    503 upstream_unavailable: MiniMax failed or timed out
        ├── ServiceUnavailable     503 service_unavailable: Postgres, Redis or our account is down
        └── InternalError          500 internal: a bug; the log has the rest

``AdminError`` stands apart: an operator's mistake in an admin command (unknown plan,
duplicate email); the CLI prints its message and exits 2. Callers never see one.

Each class has a stable ``code`` (documented in the README, never renamed), an
HTTP-like ``status`` (RunPod has no per-job status, so it travels inside the error),
``retryable`` and a caller-safe message. ``details`` holds caller-safe extras such as
the field name or the list of valid voices.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

__all__ = [
    "ERROR_CODES",
    "AdminError",
    "CallerError",
    "ConcurrencyLimited",
    "ContentRejected",
    "DuplicateJob",
    "InternalError",
    "InvalidRequest",
    "OdeaError",
    "QuotaExceeded",
    "RateLimited",
    "ServiceError",
    "ServiceUnavailable",
    "Throttled",
    "Unauthorized",
    "UpstreamBusy",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "VoiceNotFound",
]


class OdeaError(Exception):
    """Base of every error a caller can see."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        self.details = details or {}
        # For operators only, never on the wire: MiniMax's alert kind when it failed the
        # job that way (minimax.Failure.alert), recorded on the usage row for ``stats``.
        self.alert: str | None = None
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.retry_after is not None:
            body["retry_after"] = round(max(self.retry_after, 0.0), 3)
        body.update(self.details)
        return body

    def to_wire(self) -> str:
        """The string RunPod puts in the job's ``error``: JSON, parseable, stable."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)


class CallerError(OdeaError):
    """The caller can fix this; the same job will fail the same way again."""

    status = 400


class InvalidRequest(CallerError):
    """A field is missing, malformed or out of range (``details.field`` names it)."""

    code = "invalid_request"
    default_message = "The request is not valid."


class Unauthorized(CallerError):
    """The API key is missing, unknown or revoked, or its user is inactive."""

    code = "unauthorized"
    status = 401
    default_message = "Missing or invalid API key."


class QuotaExceeded(CallerError):
    """The job's estimated seconds do not fit in the seconds left this cycle."""

    code = "quota_exceeded"
    status = 402
    default_message = "Not enough audio seconds left in this billing cycle."


class VoiceNotFound(CallerError):
    """No active voice has that name (``details.voices`` lists the valid ones)."""

    code = "voice_not_found"
    status = 404
    default_message = "Unknown voice."


class DuplicateJob(CallerError):
    """A job with this id was already synthesised and charged; it is not charged again."""

    code = "duplicate_job"
    status = 409
    default_message = "This job id was already processed and charged."


class ContentRejected(CallerError):
    """MiniMax flagged the input text or the generated audio."""

    code = "content_rejected"
    status = 422
    default_message = "The text was rejected by the speech provider's content policy."


class Throttled(OdeaError):
    """Too many requests; ``retry_after`` says when to come back."""

    status = 429
    retryable = True


class RateLimited(Throttled):
    """The plan's requests per minute are used up."""

    code = "rate_limited"
    default_message = "Too many requests for your plan; slow down."


class ConcurrencyLimited(Throttled):
    """All the plan's concurrent streams are in use."""

    code = "concurrency_limited"
    default_message = "Too many jobs in progress for your plan."


class UpstreamBusy(Throttled):
    """Our MiniMax account is at its request or token limit."""

    code = "upstream_busy"
    default_message = "The speech provider is busy; try again shortly."


class ServiceError(OdeaError):
    """Our side or MiniMax's failed; nothing was charged."""

    status = 503
    retryable = True


class UpstreamRejected(ServiceError):
    """MiniMax refused a request that we built (a bug or an unsupported combination)."""

    code = "upstream_rejected"
    status = 502
    retryable = False
    default_message = "The speech provider rejected the request."


class UpstreamUnavailable(ServiceError):
    """MiniMax failed, timed out or answered nonsense, after our retries."""

    code = "upstream_unavailable"
    default_message = "The speech provider is unavailable; try again later."


class ServiceUnavailable(ServiceError):
    """Postgres, Redis or our MiniMax account is unavailable; operators are alerted."""

    code = "service_unavailable"
    default_message = "The service is temporarily unavailable; try again later."


class InternalError(ServiceError):
    """A bug. The log has the traceback; the caller gets only this."""

    code = "internal"
    status = 500
    retryable = False


def _leaves(cls: type[OdeaError]) -> list[type[OdeaError]]:
    subs = cls.__subclasses__()
    return [cls] if not subs else [leaf for sub in subs for leaf in _leaves(sub)]


ERROR_CODES: dict[str, type[OdeaError]] = {leaf.code: leaf for leaf in _leaves(OdeaError)}


class AdminError(Exception):
    """An operator's mistake in an admin command: a message for a person, no traceback."""
