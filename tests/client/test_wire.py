"""The client against RunPod's API as documented, played by httpx.MockTransport: polling,
the local server's POST-only /status, throttle retries, presigned URLs, RunPod's own
failures. The real local API server is in tests/client/test_local_server.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from odeatts_client import (
    AsyncClient,
    Client,
    EndpointError,
    JobFailed,
    RateLimited,
    TransportError,
    UpstreamBusy,
)

URL = "https://api.runpod.ai/v2/abc123"
AUDIO = b"ID3 not really mp3"
RESULT = {
    "audio_base64": base64.b64encode(AUDIO).decode(),
    "format": "mp3",
    "duration_seconds": 1.9,
    "sample_rate": 32000,
    "voice": "nigerian-female",
    "characters": 20,
    "quota": {"used_seconds": 41.3, "remaining_seconds": 558.7},
    "request_id": "job-1",
    "timestamps": [{"text": "Good", "start_seconds": 0.0, "end_seconds": 0.3}],
}
THROTTLED = json.dumps(
    {"code": "rate_limited", "message": "Slow down.", "status": 429, "retry_after": 0.01}
)
Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


@dataclass
class RunPod:
    """Answers each path (after the endpoint URL) with its replies in turn, the last one
    again once they run out; keeps every request."""

    replies: dict[str, list[Reply]]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v2/abc123/")
        queue = self.replies.get(path) or self.replies.get(path.split("/")[0], [])
        if not queue:
            return httpx.Response(404, text="no route")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix('/v2/abc123/')}" for r in self.requests]


def job(status: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": "job-1", "status": status, **fields})


def client(runpod: RunPod, **options: Any) -> Client:
    return Client(
        URL,
        "rp-key",
        "odea_key",
        transport=httpx.MockTransport(runpod),
        poll_interval=0.001,
        **options,
    )


def test_a_completed_runsync_is_speech_with_its_metadata() -> None:
    runpod = RunPod({"runsync": [job("COMPLETED", output=RESULT)]})
    speech = client(runpod).speech("Good morning, Lagos.", "nigerian-female", speed=1.1)
    assert speech.audio == AUDIO and speech.request_id == "job-1"
    assert (speech.duration_seconds, speech.charged_seconds, speech.characters) == (1.9, 1.9, 20)
    assert (speech.used_seconds, speech.remaining_seconds) == (41.3, 558.7)
    assert speech.extra == {"timestamps": RESULT["timestamps"]}  # fields newer than the client
    sent = runpod.requests[0]
    assert sent.headers["authorization"] == "Bearer rp-key"
    assert json.loads(sent.content) == {
        "input": {
            "api_key": "odea_key",
            "text": "Good morning, Lagos.",
            "voice": "nigerian-female",
            "speed": 1.1,
        }
    }
    assert 1000 <= int(sent.url.params["wait"]) <= 300_000


def test_a_runsync_still_queued_is_polled_on_status() -> None:
    runpod = RunPod(
        {
            "runsync": [job("IN_QUEUE")],
            "status": [job("IN_PROGRESS"), job("COMPLETED", output=RESULT)],
        }
    )
    assert client(runpod).speech("Hi.", "british-male").audio == AUDIO
    assert runpod.calls() == ["POST runsync", "GET status/job-1", "GET status/job-1"]


def test_the_local_servers_post_only_status_is_found_once() -> None:
    not_allowed = httpx.Response(405, json={"detail": "Method Not Allowed"})

    def status(request: httpx.Request) -> httpx.Response:
        return not_allowed if request.method == "GET" else job("COMPLETED", output=RESULT)

    runpod = RunPod({"runsync": [job("IN_PROGRESS")], "status": [status]})
    tts = client(runpod)
    tts.speech("Hi.", "british-male")
    tts.speech("Hi.", "british-male")
    assert runpod.calls() == [
        "POST runsync",
        "GET status/job-1",
        "POST status/job-1",
        "POST runsync",
        "POST status/job-1",
    ]


def test_a_throttled_job_is_sent_again_after_retry_after() -> None:
    runpod = RunPod({"runsync": [job("FAILED", error=THROTTLED), job("COMPLETED", output=RESULT)]})
    assert client(runpod).speech("Hi.", "british-male").audio == AUDIO
    assert runpod.calls() == ["POST runsync", "POST runsync"]


@pytest.mark.parametrize(
    ("options", "sent"),
    [({"throttle_retries": 0}, 1), ({"throttle_retries": 2}, 3), ({"max_retry_after": 0.001}, 1)],
)
def test_throttle_retries_stop_where_the_caller_says(options: dict[str, Any], sent: int) -> None:
    runpod = RunPod({"runsync": [job("FAILED", error=THROTTLED)]})
    with pytest.raises(RateLimited) as info:
        client(runpod, **options).speech("Hi.", "british-male")
    assert info.value.retry_after == 0.01 and info.value.status == 429
    assert info.value.details == {} and info.value.request_id == "job-1"
    assert len(runpod.requests) == sent


def test_a_presigned_url_is_fetched_without_the_runpod_key() -> None:
    at_url = {**RESULT, "audio_url": "https://bucket.example/a.mp3?X-Amz-Signature=s"}
    del at_url["audio_base64"]
    runpod = RunPod({"runsync": [job("COMPLETED", output=at_url)]})
    storage: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "bucket.example":
            storage.append(request)
            return httpx.Response(200, content=AUDIO)
        return runpod(request)

    tts = Client(URL, "rp-key", "odea_key", transport=httpx.MockTransport(route))
    speech = tts.speech("Hi.", "british-male")
    assert speech.audio == AUDIO and speech.audio_url == at_url["audio_url"]
    assert "authorization" not in storage[0].headers


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (job("TIMED_OUT"), "timed_out"),
        (job("CANCELLED"), "cancelled"),
        (job("FAILED", error="Traceback (most recent call last): ..."), "runpod_failed"),
        (job("COMPLETED", output=None), "runpod_failed"),
    ],
)
def test_a_job_that_ended_without_our_error_is_job_failed(reply: httpx.Response, code: str) -> None:
    with pytest.raises(JobFailed) as info:
        client(RunPod({"runsync": [reply]})).speech("Hi.", "british-male")
    assert info.value.code == code


def test_runpods_own_refusal_is_an_endpoint_error() -> None:
    runpod = RunPod({"runsync": [httpx.Response(401, text="Unauthorized")]})
    with pytest.raises(EndpointError) as info:
        client(runpod).speech("Hi.", "british-male")
    assert info.value.status == 401 and info.value.code == "runpod_http"


def test_an_unreachable_endpoint_is_a_transport_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError):
        Client(URL, None, "odea_key", transport=httpx.MockTransport(down)).voices()


def test_the_clients_own_deadline_ends_polling() -> None:
    runpod = RunPod({"runsync": [job("IN_QUEUE")], "status": [job("IN_QUEUE")]})
    with pytest.raises(JobFailed) as info:
        client(runpod, timeout=0.05).speech("Hi.", "british-male")
    assert info.value.code == "client_timeout" and info.value.request_id == "job-1"


def test_a_stream_is_polled_until_its_final_item() -> None:
    chunk = {"chunk": 0, "format": "mp3", "audio_base64": base64.b64encode(b"ab").decode()}
    final = {**RESULT, "done": True, "chunks": 2}
    del final["audio_base64"]
    runpod = RunPod(
        {
            "run": [job("IN_QUEUE")],
            "stream": [
                httpx.Response(200, json={"status": "IN_PROGRESS", "stream": [{"output": chunk}]}),
                httpx.Response(200, json={"status": "IN_PROGRESS", "stream": []}),
                httpx.Response(
                    200,
                    json={"status": "COMPLETED", "stream": [{"output": chunk}, {"output": final}]},
                ),
            ],
        }
    )
    audio = client(runpod).stream("Hi.", "british-male")
    assert list(audio) == [b"ab", b"ab"]
    assert audio.result is not None and audio.result.duration_seconds == 1.9
    assert json.loads(runpod.requests[0].content)["input"]["stream"] is True


def test_an_error_item_ends_a_stream_with_its_error() -> None:
    busy = json.dumps({"code": "upstream_busy", "message": "Busy.", "status": 429})
    runpod = RunPod(
        {
            "run": [job("IN_QUEUE")],
            "stream": [httpx.Response(200, json={"status": "FAILED", "error": busy})],
        }
    )
    with pytest.raises(UpstreamBusy):
        list(client(runpod).stream("Hi.", "british-male"))


async def test_the_async_client_polls_retries_and_fetches_alike() -> None:
    at_url = {**RESULT, "audio_url": "https://bucket.example/a.mp3"}
    del at_url["audio_base64"]
    runpod = RunPod(
        {
            "runsync": [job("FAILED", error=THROTTLED), job("IN_PROGRESS")],
            "status": [job("COMPLETED", output=at_url)],
        }
    )

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "bucket.example":
            return httpx.Response(200, content=AUDIO)
        return runpod(request)

    async with AsyncClient(
        URL, "rp-key", "odea_key", transport=httpx.MockTransport(route), poll_interval=0.001
    ) as tts:
        speech = await tts.speech("Hi.", "british-male")
    assert speech.audio == AUDIO
    assert runpod.calls() == ["POST runsync", "POST runsync", "GET status/job-1"]
