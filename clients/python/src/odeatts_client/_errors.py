"""Every failure the client raises, one tree, rooted in ``OdeaTTSError``.

    OdeaTTSError                 anything that kept a call from its result
    ├── InvalidRequest           400 invalid_request: a field is missing or out of range (.field)
    ├── Unauthorized             401 unauthorized: the OdeaTTS key is missing, unknown or revoked
    ├── QuotaExceeded            402 quota_exceeded: the job does not fit in what is left
    ├── VoiceNotFound            404 voice_not_found: no such voice (details["voices"] lists them)
    ├── DuplicateJob             409 duplicate_job: this job id was already charged or is running
    ├── ContentRejected          422 content_rejected: MiniMax flagged the text or the audio
    ├── Throttled                429: try again after ``retry_after`` seconds (retried for you)
    │   ├── RateLimited          rate_limited: the plan's requests per minute are used
    │   ├── ConcurrencyLimited   concurrency_limited: the plan's concurrent streams are busy
    │   └── UpstreamBusy         upstream_busy: OdeaTTS's MiniMax account is at its limit
    ├── UpstreamRejected         502 upstream_rejected: MiniMax refused a request OdeaTTS built
    ├── UpstreamUnavailable      503 upstream_unavailable: MiniMax failed; safe to retry
    ├── ServiceUnavailable       503 service_unavailable: OdeaTTS is down; safe to retry
    ├── InternalError            500 internal: a bug on OdeaTTS's side
    ├── JobFailed                the job ended without an OdeaTTS error: RunPod's own FAILED
    │                            (``runpod_failed``), CANCELLED (``cancelled``) or
    │                            TIMED_OUT (``timed_out``), or the client's own deadline
    │                            (``client_timeout``)
    ├── EndpointError            RunPod's API refused the call itself (``runpod_http``): a
    │                            wrong RunPod key (401), endpoint (404), its own 429 or 5xx
    └── TransportError           the endpoint could not be reached (``transport``)

OdeaTTS fails a job with a JSON string in RunPod's ``error`` field, ``{"code", "message",
"status", "retry_after"?, ...details}``; ``from_wire`` turns it into the class of its
``code``. The codes are stable; a code this version does not know still raises an
``OdeaTTSError`` carrying it. Nothing here is raised for a job that succeeded.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

__all__ = [
    "ConcurrencyLimited",
    "ContentRejected",
    "DuplicateJob",
    "EndpointError",
    "InternalError",
    "InvalidRequest",
    "JobFailed",
    "OdeaTTSError",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "UpstreamBusy",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "VoiceNotFound",
    "from_wire",
]


class OdeaTTSError(Exception):
    """A failed call: ``code`` (stable), ``status`` (HTTP-like), ``message``,
    ``retry_after`` (seconds, throttled errors), ``details`` (the error's other fields)
    and ``request_id`` (the RunPod job id, when there was a job)."""

    code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may carry an unknown code
        self.status = status
        self.retry_after = retry_after
        self.details = details or {}
        self.request_id = request_id

    @property
    def field(self) -> str | None:
        """The input field an ``invalid_request`` names."""
        value = self.details.get("field")
        return value if isinstance(value, str) else None

    def __str__(self) -> str:
        job = f" (job {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{job}"


class InvalidRequest(OdeaTTSError):
    code = "invalid_request"


class Unauthorized(OdeaTTSError):
    code = "unauthorized"


class QuotaExceeded(OdeaTTSError):
    code = "quota_exceeded"


class VoiceNotFound(OdeaTTSError):
    code = "voice_not_found"


class DuplicateJob(OdeaTTSError):
    code = "duplicate_job"


class ContentRejected(OdeaTTSError):
    code = "content_rejected"


class Throttled(OdeaTTSError):
    code = "throttled"


class RateLimited(Throttled):
    code = "rate_limited"


class ConcurrencyLimited(Throttled):
    code = "concurrency_limited"


class UpstreamBusy(Throttled):
    code = "upstream_busy"


class UpstreamRejected(OdeaTTSError):
    code = "upstream_rejected"


class UpstreamUnavailable(OdeaTTSError):
    code = "upstream_unavailable"


class ServiceUnavailable(OdeaTTSError):
    code = "service_unavailable"


class InternalError(OdeaTTSError):
    code = "internal"


class JobFailed(OdeaTTSError):
    code = "runpod_failed"


class EndpointError(OdeaTTSError):
    code = "runpod_http"


class TransportError(OdeaTTSError):
    code = "transport"


_BY_CODE: dict[str, type[OdeaTTSError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        QuotaExceeded,
        VoiceNotFound,
        DuplicateJob,
        ContentRejected,
        RateLimited,
        ConcurrencyLimited,
        UpstreamBusy,
        UpstreamRejected,
        UpstreamUnavailable,
        ServiceUnavailable,
        InternalError,
    )
}
_KNOWN = ("code", "message", "status", "retry_after")


def from_wire(error: Any, *, request_id: str | None = None) -> OdeaTTSError:
    """The exception for RunPod's ``error`` of a failed job. OdeaTTS sends a JSON string;
    anything else (RunPod's own text, a worker that crashed) is a ``JobFailed``."""
    body = _json_object(error)
    if body is None or not isinstance(body.get("code"), str):
        text = error if isinstance(error, str) else json.dumps(error)
        return JobFailed(f"the job failed: {text[:500]}", request_id=request_id)
    code = body["code"]
    retry_after = body.get("retry_after")
    status = body.get("status")
    return _BY_CODE.get(code, OdeaTTSError)(
        str(body.get("message") or code),
        code=code,
        status=status if isinstance(status, int) else None,
        retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None,
        details={k: v for k, v in body.items() if k not in _KNOWN},
        request_id=request_id,
    )


def _json_object(error: Any) -> dict[str, Any] | None:
    if isinstance(error, dict):
        return error
    if not isinstance(error, str):
        return None
    try:
        body = json.loads(error)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
