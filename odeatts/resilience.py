"""Deadlines and breakers: how the job path keeps its promises when a dependency does not.

A refused connection fails fast by itself; a dependency that stalls or goes silent
does not. So every call the job path makes to Postgres, Redis, MiniMax or object
storage goes through a ``Dependency``:

``Budget``      one per job (``ODEATTS_JOB_TIMEOUT_SECONDS``); every step's deadline is
                the smaller of its own limit and what is left of the job's budget.
``Dependency``  runs one call as its own task and waits at most its deadline. On
                timeout the caller gets the dependency's error AT ONCE and the task is
                cancelled in the background: psycopg, for one, spends up to 10 s trying
                to cancel a query on a silent server before it gives up, and the caller
                must not wait for that.
``Breaker``     after ``threshold`` consecutive failures the dependency is taken as down:
                calls fail fast for ``cooldown`` seconds, then one call probes. The
                outage is logged once when it starts (ERROR, with counts) and once when
                it ends (INFO), instead of a traceback per job.
``Gate``        at most as many calls at once as the dependency has connections (the
                Postgres pool), the others wait their turn in arrival order, and work
                that finishes a job (``urgent``: a settle, a release) goes before work
                that starts one. A call's deadline starts when it has its turn: waiting
                behind this worker's own jobs says nothing about the dependency, and
                must not open its breaker (it did: under a burst, waits for the pool
                timed out, the breaker opened, and every job after failed at once).

Only failures of the dependency itself count against its breaker (a timeout, a lost
connection, MiniMax answering nonsense); a caller's error found there (an unknown key,
a spent quota) is a healthy answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from odeatts.errors import OdeaError

__all__ = ["Breaker", "Budget", "Dependency", "Gate"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]


@dataclass
class Budget:
    """What is left of one job's time."""

    seconds: float
    clock: Clock = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        return max(self.seconds - (self.clock() - self.started), 0.0)


@dataclass
class Breaker:
    """Consecutive failures of one dependency, in this worker process."""

    name: str
    threshold: int = 5
    cooldown: float = 2.0
    clock: Clock = time.monotonic
    failures: int = 0
    refused: int = 0
    _open_until: float = 0.0
    _since: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def allow(self) -> bool:
        """False while the dependency is taken as down; one probe per cooldown passes."""
        if not self.is_open:
            return True
        now = self.clock()
        if now >= self._open_until:
            self._open_until = now + self.cooldown  # this call probes; others fail fast
            return True
        self.refused += 1
        return False

    def success(self) -> None:
        if self.is_open:
            log.info(
                "%s recovered after %.1f s: %d failed calls, %d refused without trying",
                self.name,
                self.clock() - self._since,
                self.failures,
                self.refused,
            )
        self.failures = self.refused = 0

    def failure(self, reason: str) -> None:
        now = self.clock()
        self.failures += 1
        if self.failures == 1:
            self._since = now
        if self.failures == self.threshold:
            log.error(
                "%s is down: %d consecutive failures (last: %s); failing fast, "
                "probing every %.1f s",
                self.name,
                self.failures,
                reason,
                self.cooldown,
            )
        if self.is_open:
            self._open_until = now + self.cooldown
        elif self.failures == 1:
            log.warning("%s call failed: %s", self.name, reason)


class Gate:
    """``size`` turns at once; waiters are served first come, first served, urgent ones
    (work that finishes a job) before the rest. Waiting is bounded by whoever waits: the
    turns ahead are each bounded by their own deadline."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a gate needs at least one turn")
        self.size = size
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._queued: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._queued)

    @property
    def open(self) -> bool:
        """Whether a turn asked for now is given at once."""
        return self._free > 0 and not self.waiting

    @asynccontextmanager
    async def turn(
        self, *, urgent: bool = False, within: float | None = None
    ) -> AsyncIterator[None]:
        """Hold one turn; raises ``_NoTurn`` when none came ``within`` seconds."""
        if self.open:
            self._free -= 1
        else:
            queue = self._urgent if urgent else self._queued
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.append(turn)
            try:
                async with asyncio.timeout(within):
                    await turn
            except (asyncio.CancelledError, TimeoutError) as exc:
                if turn.done() and not turn.cancelled():
                    self._pass_on()  # the turn was ours already: hand it to the next
                else:
                    queue.remove(turn)
                if isinstance(exc, TimeoutError):
                    raise _NoTurn() from None
                raise
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        for queue in (self._urgent, self._queued):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free += 1


class _NoTurn(Exception):
    """The job's budget ran out while it waited for its turn at a gate."""


@dataclass
class Dependency:
    """One external service as the job path sees it: a deadline, a breaker, an error,
    and, for a pool, a gate."""

    name: str
    timeout: float
    error: Callable[[], OdeaError]
    is_failure: Callable[[BaseException], bool]
    breaker: Breaker
    gate: Gate | None = None
    _abandoned: set[asyncio.Future[Any]] = field(default_factory=set, repr=False)

    async def call(
        self,
        work: Callable[[], Awaitable[T]],
        *,
        budget: Budget | None = None,
        timeout: float | None = None,
        urgent: bool = False,
    ) -> T:
        """Run ``work()`` within the deadline; its failures become ``self.error()``.
        With a gate, the deadline starts at this call's turn (``urgent``: see Gate); the
        wait for it is bounded by the job's budget."""
        if self.gate is None:
            return await self._call(work, budget, timeout)
        try:
            async with self.gate.turn(
                urgent=urgent, within=None if budget is None else budget.remaining()
            ):
                return await self._call(work, budget, timeout)
        except _NoTurn:
            raise self.error() from None

    async def _call(
        self, work: Callable[[], Awaitable[T]], budget: Budget | None, timeout: float | None
    ) -> T:
        limit = self.timeout if timeout is None else timeout
        if budget is not None:
            limit = min(limit, budget.remaining())
        if limit <= 0:
            raise self.error()
        self.check()
        # What asyncio.wait({task}, timeout=limit) does, without its sets, its copies
        # and its second pass over the task's callbacks (55 us a call, 26 now): one
        # waiter woken by the task's end or by the deadline, whichever comes first.
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(work())
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        task.add_done_callback(wake)
        timer = loop.call_later(limit, wake, None)
        try:
            await waiter
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        finally:
            timer.cancel()
            task.remove_done_callback(wake)
        if not task.done():
            self._abandon(task)
            self.breaker.failure(f"no answer within {limit:.1f} s")
            raise self.error()
        return self._outcome(task)

    def check(self) -> None:
        """Fail fast while the breaker is open (for calls that cannot go through ``call``,
        such as a stream, which then report with ``observe``)."""
        if not self.breaker.allow():
            raise self.error()

    def observe(self, exc: BaseException | None) -> None:
        """Count one call's outcome; only the dependency's own failures count against it."""
        if exc is not None and self.is_failure(exc):
            self.breaker.failure(type(exc.__cause__ or exc).__name__)
        else:
            self.breaker.success()  # it answered, even if the answer is a refusal

    def _abandon(self, task: asyncio.Future[Any]) -> None:
        """Cancel without waiting; whatever the task ends with is consumed, not reported.
        It is kept until it ends, so that closing can wait for it."""
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def aclose(self, grace: float = 12.0) -> None:
        """Wait (at most ``grace`` seconds) for abandoned calls to end, so their
        connections close in this event loop rather than leak when it closes. 12 s
        covers psycopg's cancel-then-wait on a silent server."""
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=grace)

    def _outcome(self, task: asyncio.Future[T]) -> T:
        exc = task.exception()
        self.observe(exc)
        if exc is None:
            return task.result()
        if self.is_failure(exc) and not isinstance(exc, OdeaError):
            raise self.error() from exc
        raise exc
