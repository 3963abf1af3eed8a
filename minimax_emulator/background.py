"""BackgroundServer: an aiohttp app served from its own thread and event loop.

Why: tests (sync or pytest-asyncio) and demo scripts need real HTTP servers on free
loopback ports that neither depend on nor block the caller's event loop: the MiniMax
emulator (server.Emulator) and the tests' fake RunPod queue. Both run their app the
same way, so the thread, the loop, the start-up handshake and the shutdown live here
once. It is in the emulator package because the tests may import the emulator, never
the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Serves ``make_app()`` on ``host:port`` (0 = a free port, kept for a restart).

    ``make_app`` runs on the server's loop, so it may create loop-bound objects.
    ``on_stop`` runs on that loop before the runner is cleaned up (e.g. to answer held
    long-polls). ``shutdown_timeout`` is how long cleanup lets open requests finish.
    """

    def __init__(
        self,
        make_app: Callable[[], web.Application],
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 1.0,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._make_app, self._name = make_app, name
        self._shutdown_timeout, self._on_stop = shutdown_timeout, on_stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server's loop from start() to stop() (for call_soon_threadsafe), else None."""
        return self._loop

    @property
    def serving(self) -> bool:
        return self._runner is not None

    def start(self) -> None:
        """Start serving; returns once the socket is listening (or raises why not)."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name} already started")
        ready, failure = threading.Event(), list[BaseException]()
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready, failure), name=self._name, daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._runner = self._loop = None
            raise failure[0]

    def stop(self) -> None:
        """Run ``on_stop``, close the server and join the thread (safe to call twice)."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = self._runner = self._loop = None

    async def _listen(self) -> None:
        runner = web.AppRunner(
            self._make_app(), access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _shutdown(self) -> None:
        if self._on_stop is not None:
            await self._on_stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        ready: threading.Event,
        failure: list[BaseException],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # report to start(), then give up
            failure.append(exc)
        ready.set()
        if not failure:
            loop.run_forever()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
