"""A TCP proxy the test controls, between the code under test and a real service.

Why: a refused connection is the easy failure. What hurts in production is a
dependency that stops answering: a frozen Redis that runs the queued commands when it
wakes, a Postgres behind a dead NAT that never sends a reset. These can only be shown
with the real service behind something that misbehaves on command:

``pass``     bytes flow both ways (the default, and what ``resume`` returns to)
``stall``    nothing is forwarded, nothing is lost: bytes wait in the proxy and the
             kernel's buffers and are delivered, in order, on ``resume``. New
             connections are accepted and wait too. This is a frozen (SIGSTOP) service.
``silence``  bytes are accepted and dropped, both ways, on every connection: a black
             hole. ``resume`` lets later bytes through; what was dropped is gone.
``cut()``    every open connection is reset (RST) at once; later connections pass
             unless ``refuse`` is set.
``refuse``   new connections are reset as soon as they are accepted.

The proxy runs its own event loop in a thread, so a test's loop may block on the
service while the proxy keeps its promises.

``round_trips`` counts, over all connections, the times a client spoke after it had
heard from the server (or first, on a new connection): each is one request the client
then waits on, one network latency of the caller's time. It counts turns, not bytes or
TCP segments, so a request the kernel splits into several reads, or several messages
a client pipelines in one go (psycopg's Bind/Execute/Sync, a Redis MULTI/EXEC), is one
round trip, as it should be, and a reply read in pieces does not count at all. A
connection's opening (TLS, startup, Redis HELLO) counts too: a test that measures the
steady state warms its pools up first. Only what passes while the mode is ``pass`` is
counted faithfully.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal, cast
from urllib.parse import urlsplit

__all__ = ["Mode", "TcpProxy"]

Mode = Literal["pass", "stall", "silence", "refuse"]


class TcpProxy:
    def __init__(self, target_url: str, default_port: int) -> None:
        parts = urlsplit(target_url)
        self._target_url = target_url
        self._target = (parts.hostname or "127.0.0.1", parts.port or default_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="tcp-proxy"
        )
        self._mode: Mode = "pass"
        self._flowing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.round_trips = 0

    # ------------------------------------------------------------ test side
    def start(self) -> TcpProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    def stop(self) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The target's URL with its host and port replaced by the proxy's."""
        parts = urlsplit(self._target_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    def set(self, mode: Mode) -> None:
        self._run(self._set(mode))

    def resume(self) -> None:
        self.set("pass")

    def cut(self) -> None:
        """Reset every open connection now."""
        self._run(self._reset_all())

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # ----------------------------------------------------------- proxy side
    async def _listen(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        await self._reset_all()
        if self._server is not None:
            self._server.close()
        # A transport closes its socket in a callback of the next loop turn: let those
        # run before the loop stops, or the sockets leak (a ResourceWarning in whichever
        # later test the garbage collector happens to run in).
        for _ in range(3):
            await asyncio.sleep(0.01)

    async def _set(self, mode: Mode) -> None:
        self._mode = mode
        if mode in ("pass", "refuse"):
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._mode == "refuse":
            _reset(writer)
            return
        self._writers.add(writer)
        while self._mode == "stall":
            await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        self._writers.add(up_writer)
        turn = ["server"]  # who spoke last on this connection; the client opens
        await asyncio.gather(
            self._pump(reader, up_writer, turn, "client"),
            self._pump(up_reader, writer, turn, "server"),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        turn: list[str],
        side: str,
    ) -> None:
        try:
            while data := await reader.read(65536):
                # Before forwarding: the peer cannot answer what it has not been sent.
                if turn[0] != side:
                    turn[0] = side
                    if side == "client":
                        self.round_trips += 1
                if self._mode == "silence":
                    continue
                while self._mode == "stall":
                    await self._flowing.wait()
                # set() may have changed the mode during the wait; mypy keeps the narrowing.
                if cast(Mode, self._mode) == "silence":
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: what a peer sees when a service or a link dies."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
