"""The plans Postgres really runs for our statements, and how long each took.

``auto_explain`` (a contrib module shipped with Postgres; loading it needs a superuser,
as the tests and benchmarks have) logs the plan of every statement a connection runs;
with ``auto_explain.log_level = notice`` the plan comes back to the client as a notice,
so the real statements of the real functions are seen, parameters and all. With
``generic`` the connection also sets ``plan_cache_mode = force_generic_plan``, which
applies to psycopg's unnamed (extended protocol) statements as to prepared ones: the
plan a worker's connection may settle on after five executions of a statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from odeatts.db import make_engine

__all__ = ["ExplainedPlan", "PlanLog", "explaining", "explaining_everywhere"]

_NOTICE = re.compile(r"duration: ([0-9.]+) ms\s+plan:\s*\nQuery Text: (.*)", re.DOTALL)
# The plan's first line: its top node, not indented, with its cost (the query text
# before it may span many lines).
_TOP_NODE = re.compile(r"^\S.*\(cost=[0-9.]+\.\.[0-9.]+ rows=", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ExplainedPlan:
    query: str
    plan: str
    duration_ms: float


@dataclass
class PlanLog:
    """Every statement's plan since the last ``clear``."""

    plans: list[ExplainedPlan] = field(default_factory=list)

    def clear(self) -> None:
        self.plans.clear()

    def touching(self, table: str) -> list[ExplainedPlan]:
        """The plans of the statements that name ``table`` (as ``table`` or ``"table"``)."""
        name = re.compile(rf'\b(FROM|JOIN|UPDATE|INTO)\s+"?{table}"?\b', re.IGNORECASE)
        return [p for p in self.plans if name.search(p.query)]

    def sql_ms(self) -> float:
        return sum(p.duration_ms for p in self.plans)


def _explain_into(log: PlanLog, dbapi_connection: Any, *, generic: bool) -> None:
    """Make a new Postgres connection report its plans into ``log``."""
    pg = dbapi_connection.driver_connection
    if not hasattr(pg, "add_notice_handler"):  # not Postgres
        return

    def noticed(notice: Any) -> None:
        found = _NOTICE.match(notice.message_primary or "")
        top = _TOP_NODE.search(found[2]) if found else None
        if found and top:
            query, plan = found[2][: top.start()], found[2][top.start() :]
            log.plans.append(ExplainedPlan(query.strip(), plan, float(found[1])))

    pg.add_notice_handler(noticed)
    cursor = dbapi_connection.cursor()
    settings = [
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_level = notice",
    ]
    if generic:
        settings.append("SET plan_cache_mode = force_generic_plan")
    for statement in settings:
        cursor.execute(statement)
    cursor.close()
    dbapi_connection.commit()  # a SET rolled back with its transaction is undone


def explaining(url: str, *, generic: bool) -> tuple[AsyncEngine, PlanLog]:
    """An engine whose connections report the plan of each statement into the log."""
    engine = make_engine(url, pool_size=1)
    log = PlanLog()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _explain_into(log, dbapi_connection, generic=generic)

    return engine, log


@contextmanager
def explaining_everywhere(*, generic: bool) -> Iterator[PlanLog]:
    """The same for every engine's connections made inside the block (a Worker's own
    engine too: the job path lends its pooled connections to psycopg directly)."""
    log = PlanLog()

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        _explain_into(log, dbapi_connection, generic=generic)

    event.listen(Engine, "connect", on_connect)
    try:
        yield log
    finally:
        event.remove(Engine, "connect", on_connect)
