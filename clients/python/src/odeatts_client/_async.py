"""``AsyncClient``: runs the flows (_flow.py) with httpx.AsyncClient and asyncio.sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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

__all__ = ["AsyncAudioStream", "AsyncClient"]


class AsyncAudioStream:
    """``async for chunk in stream``; ``result`` is the job's metadata after the last."""

    def __init__(self, client: AsyncClient, job_input: dict[str, Any]) -> None:
        self._client, self._input = client, job_input
        self.result: Speech | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
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
                response = await self._client._do(step)


class AsyncClient:
    """``Client``, awaited: the same calls, options and errors."""

    def __init__(
        self,
        endpoint_url: str,
        runpod_api_key: str | None,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        config = Config(endpoint_url, runpod_api_key, api_key, **options)
        self._session = Session(config)
        self._http = httpx.AsyncClient(transport=transport, timeout=config.timeout + 30)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def speech(self, text: str, voice: str, **options: Any) -> Speech:
        speech: Speech = await self._run(
            speech_flow(self._session, speech_input(text, voice, options))
        )
        return speech

    def stream(self, text: str, voice: str, **options: Any) -> AsyncAudioStream:
        return AsyncAudioStream(self, {**speech_input(text, voice, options), "stream": True})

    async def voices(self, language: str | None = None, gender: str | None = None) -> list[Voice]:
        return voices_of(
            await self._run(result_flow(self._session, voices_input(language, gender)))
        )

    async def usage(self, limit: int | None = None) -> dict[str, Any]:
        usage: dict[str, Any] = await self._run(result_flow(self._session, usage_input(limit)))
        return usage

    async def _run(self, flow: Flow) -> Any:
        response: httpx.Response | None = None
        while True:
            try:
                step = flow.send(response)
            except StopIteration as done:
                return done.value
            response = await self._do(step)

    async def _do(self, step: Any) -> httpx.Response | None:
        if not isinstance(step, Send):
            await asyncio.sleep(step.seconds)
            return None
        try:
            return await self._http.request(step.method, step.url, **step.kwargs)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
