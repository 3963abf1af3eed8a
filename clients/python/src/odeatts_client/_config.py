"""The settings both clients share, and the throttle-retry rule."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from odeatts_client._errors import JobFailed, Throttled

__all__ = ["Config"]


@dataclass(frozen=True)
class Config:
    """``endpoint_url``: ``https://api.runpod.ai/v2/<endpoint id>`` or the local API server
    (``http://127.0.0.1:8000``). ``timeout``: seconds a call may take in all, queueing,
    polling and retries included. ``throttle_retries``: how many times a throttled job
    (``rate_limited``, ``concurrency_limited``, ``upstream_busy``) is sent again after its
    ``retry_after``, if that is at most ``max_retry_after`` seconds; 0 raises at once.
    Nothing is charged for a throttled job, so sending it again is safe."""

    endpoint_url: str
    runpod_api_key: str | None
    api_key: str
    timeout: float = 300.0
    throttle_retries: int = 2
    max_retry_after: float = 60.0
    poll_interval: float = 0.5

    def url(self, path: str) -> str:
        return f"{self.endpoint_url.rstrip('/')}/{path}"

    def headers(self) -> dict[str, str]:
        """RunPod's key, on calls to the endpoint only (never to a presigned audio URL)."""
        if not self.runpod_api_key:
            return {}
        return {"authorization": f"Bearer {self.runpod_api_key}"}

    def body(self, job_input: dict[str, Any]) -> dict[str, Any]:
        return {"input": {"api_key": self.api_key, **job_input}}

    def runsync_params(self, deadline: float) -> dict[str, int]:
        """How long RunPod may hold /runsync (it takes 1,000 to 300,000 ms); past it,
        RunPod answers IN_QUEUE or IN_PROGRESS and the client polls /status."""
        left = deadline - time.monotonic()
        return {"wait": int(min(max(left, 1.0), 300.0) * 1000)}

    def deadline(self) -> float:
        return time.monotonic() + self.timeout

    def retry_wait(self, exc: Throttled, attempt: int, deadline: float) -> float:
        """Seconds to wait before sending a throttled job again; re-raises when the
        caller's limits say not to."""
        wait = exc.retry_after
        if attempt >= self.throttle_retries or wait is None or wait > self.max_retry_after:
            raise exc
        if time.monotonic() + wait > deadline:
            raise exc
        return wait

    def check(self, deadline: float, job_id: str) -> None:
        if time.monotonic() > deadline:
            raise JobFailed(
                f"no result within {self.timeout:.0f} s", code="client_timeout", request_id=job_id
            )

    def next_poll(self, pause: float) -> float:
        return min(pause * 1.5, 2.0)
