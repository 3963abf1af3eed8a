"""``Client``: runs the flows (_flow.py) with httpx.Client and time.sleep."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from odeatts_client._config import Config
from odeatts_client._errors import TransportError
from odeatts_client._flow import (
    Chunk,
    Flow,
    Send,
    Session,
    result_flow,
    speech_flow,
    speech_input,
    stream_flow,
    usage_input,
    voices_input,
)
from odeatts_client._protocol import Speech, Voice, voices_of

__all__ = ["AudioStream", "Client"]


class AudioStream:
    """Audio chunks as the endpoint makes them (iterate it); ``result`` is the job's
    metadata once the last chunk has come (its ``audio`` is empty: you have the chunks)."""

    def __init__(self, client: Client, job_input: dict[str, Any]) -> None:
        self._client, self._input = client, job_input
        self.result: Speech | None = None

    def __iter__(self) -> Iterator[bytes]:
        flow = stream_flow(self._client._session, self._input)
        response: httpx.Response | None = None
        while True:
            try:
                step = flow.send(response)
            except StopIteration as done:
                self.result = done.value
                return
            response = None
            if isinstance(step, Chunk):
                yield step.audio
            else:
                response = self._client._do(step)


class Client:
    """A caller of one OdeaTTS endpoint. ``runpod_api_key`` may be None for the local API
    server; ``api_key`` is your OdeaTTS key. Options: see ``Config``."""

    def __init__(
        self,
        endpoint_url: str,
        runpod_api_key: str | None,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        config = Config(endpoint_url, runpod_api_key, api_key, **options)
        self._session = Session(config)
        self._http = httpx.Client(transport=transport, timeout=config.timeout + 30)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def speech(self, text: str, voice: str, **options: Any) -> Speech:
        """Synthesise ``text`` (``options``: any field of the job input table)."""
        speech: Speech = self._run(speech_flow(self._session, speech_input(text, voice, options)))
        return speech

    def stream(self, text: str, voice: str, **options: Any) -> AudioStream:
        """Audio chunks as they are made (a streaming endpoint: ``ODEATTS_HANDLER=stream``)."""
        return AudioStream(self, {**speech_input(text, voice, options), "stream": True})

    def voices(self, language: str | None = None, gender: str | None = None) -> list[Voice]:
        return voices_of(self._run(result_flow(self._session, voices_input(language, gender))))

    def usage(self, limit: int | None = None) -> dict[str, Any]:
        """Plan, limits, quota, cycle and recent jobs (the README's ``usage`` shape)."""
        usage: dict[str, Any] = self._run(result_flow(self._session, usage_input(limit)))
        return usage

    def _run(self, flow: Flow) -> Any:
        response: httpx.Response | None = None
        while True:
            try:
                step = flow.send(response)
            except StopIteration as done:
                return done.value
            response = self._do(step)

    def _do(self, step: Any) -> httpx.Response | None:
        if not isinstance(step, Send):
            time.sleep(step.seconds)
            return None
        try:
            return self._http.request(step.method, step.url, **step.kwargs)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
