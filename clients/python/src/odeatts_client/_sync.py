"""``Client``: the blocking client. ``AsyncClient`` (_async.py) is the same, awaited."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from odeatts_client._config import Config
from odeatts_client._errors import EndpointError, Throttled, TransportError
from odeatts_client._protocol import (
    Speech,
    Voice,
    audio_chunk,
    checked,
    completed_output,
    reply_json,
    result_of,
    speech_of,
    stream_items,
    voices_of,
)

__all__ = ["AudioStream", "Client"]


class AudioStream:
    """Audio chunks as the endpoint makes them (iterate it); ``result`` is the job's
    metadata once the last chunk has come (its ``audio`` is empty: you have the chunks)."""

    def __init__(self, client: Client, job_input: dict[str, Any]) -> None:
        self._client, self._input = client, job_input
        self.result: Speech | None = None

    def __iter__(self) -> Iterator[bytes]:
        deadline = self._client.config.deadline()
        job_id = self._client._post("run", self._client.config.body(self._input))["id"]
        pause = self._client.config.poll_interval
        while True:
            items, ended = stream_items(self._client._ask(f"stream/{job_id}"))
            for item in items:
                if isinstance(item, dict) and item.get("done"):
                    self.result = speech_of(item, b"")
                else:
                    yield audio_chunk(item)
            if ended:
                return
            self._client.config.check(deadline, job_id)
            if not items:
                time.sleep(pause)
                pause = self._client.config.next_poll(pause)


class Client:
    """A caller of one OdeaTTS endpoint. ``runpod_api_key`` may be None for the local API
    server; ``api_key`` is your OdeaTTS key. See ``Config`` for the other options."""

    def __init__(
        self,
        endpoint_url: str,
        runpod_api_key: str | None,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        self.config = Config(endpoint_url, runpod_api_key, api_key, **options)
        self._http = httpx.Client(transport=transport, timeout=self.config.timeout + 30)
        self._ask_method = "GET"  # RunPod's; the SDK's local server takes only POST

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the API
    def speech(self, text: str, voice: str, **options: Any) -> Speech:
        """Synthesise ``text``; the audio comes inline or is fetched from its URL."""
        result = self._result({"text": text, "voice": voice, **options})
        return speech_of(result, self._audio(result))

    def stream(self, text: str, voice: str, **options: Any) -> AudioStream:
        """Audio chunks as they are made (a streaming endpoint: ``ODEATTS_HANDLER=stream``)."""
        return AudioStream(self, {"text": text, "voice": voice, **options, "stream": True})

    def voices(self, language: str | None = None, gender: str | None = None) -> list[Voice]:
        filters = {k: v for k, v in (("language", language), ("gender", gender)) if v}
        return voices_of(self._result({"action": "voices", **filters}))

    def usage(self, limit: int | None = None) -> dict[str, Any]:
        """Plan, limits, quota, cycle and recent jobs (the README's ``usage`` shape)."""
        return self._result({"action": "usage", **({"limit": limit} if limit else {})})

    # ------------------------------------------------------------------ the wire
    def _result(self, job_input: dict[str, Any]) -> dict[str, Any]:
        deadline = self.config.deadline()
        attempt = 0
        while True:
            try:
                return self._once(job_input, deadline)
            except Throttled as exc:
                time.sleep(self.config.retry_wait(exc, attempt, deadline))
                attempt += 1

    def _once(self, job_input: dict[str, Any], deadline: float) -> dict[str, Any]:
        body = self.config.body(job_input)
        reply = self._post("runsync", body, params=self.config.runsync_params(deadline))
        job_id = reply.get("id")
        pause = self.config.poll_interval
        while not (finished := completed_output(reply))[0]:
            self.config.check(deadline, str(job_id))
            time.sleep(pause)
            pause = self.config.next_poll(pause)
            reply = self._ask(f"status/{job_id}")
        return result_of(finished[1], job_id)

    def _audio(self, result: dict[str, Any]) -> bytes:
        if isinstance(result.get("audio_base64"), str):
            return base64.b64decode(result["audio_base64"])
        # A presigned URL: fetched without RunPod's key (it must not leave for storage).
        response = self._send("GET", result["audio_url"], headers={})
        return response.content

    def _post(self, path: str, body: Any, params: Any = None) -> dict[str, Any]:
        response = self._send(
            "POST", self.config.url(path), json=body, params=params, headers=self.config.headers()
        )
        return reply_json(response)

    def _ask(self, path: str) -> dict[str, Any]:
        """/status and /stream: GET on RunPod; the SDK's local server answers GET with 405
        and takes POST, so the client switches once and keeps to it."""
        url, headers = self.config.url(path), self.config.headers()
        try:
            return reply_json(self._send(self._ask_method, url, headers=headers))
        except EndpointError as exc:
            if exc.status != 405 or self._ask_method == "POST":
                raise
        self._ask_method = "POST"
        return reply_json(self._send("POST", url, headers=headers))

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return checked(response)
