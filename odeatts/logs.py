"""Logging set-up: redacted output in text or JSON, and the job each line belongs to.

Redaction happens in the formatter, on the fully formatted output (message,
traceback, stack), so nothing a handler prints escapes it; see odeatts/redaction.py
for what is masked. ``configure_logging(settings)`` also masks the literal values of
the configured secrets (MiniMax key, pepper, bucket secret, URL passwords).

Job context: every line logged while a job runs carries ``job_id``, ``user_id`` and
``trace_id`` (JSON keys; ``[job=... user=... trace=...]`` at the end of a text
line; None or absent while unknown). The worker opens the context::

    with job_context(job["id"]):
        ...  # the whole job

and the job path adds what it learns later, once known::

    bind(user_id=caller.user_id)   # after the API key is verified
    bind(trace_id=trace_id)        # MiniMax's trace id, for support tickets

The values live in a ``contextvars.ContextVar``: concurrent jobs (each an asyncio
task) never see each other's, and ``job_context`` restores the previous values on
exit, dropping whatever ``bind`` added inside it (outside any job, ``bind`` lasts
as long as the current task or context). An async generator's body runs in
the context of whoever iterates it, so a streaming job's context holds for every step
RunPod runs in its job task (and is visible to that task between steps). A task
started inside the job (``gather``, ``create_task``) inherits a copy: what it binds
stays in that task, so bind in the job's own task what later lines should carry.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from odeatts.redaction import Redactor, redact

if TYPE_CHECKING:
    from odeatts.config import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "JobContextFilter",
    "JsonLogFormatter",
    "TextLogFormatter",
    "bind",
    "configure_logging",
    "job_context",
    "log_context",
    "redact",
]

CONTEXT_FIELDS = ("job_id", "user_id", "trace_id")
_SHORT = {"job_id": "job", "user_id": "user", "trace_id": "trace"}
_EMPTY: Mapping[str, object] = MappingProxyType({})
# The formatter's own ISO time (``timestamp=True``): it holds no secret, and as it is new
# on every line, masking it took every pattern each time (40 us of a line's 190).
_OUR_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
_fields: ContextVar[Mapping[str, object]] = ContextVar("odeatts_log_fields", default=_EMPTY)


@contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Tag every line logged inside with this job (and nothing from an outer job)."""
    token = _fields.set(MappingProxyType({"job_id": job_id}))
    try:
        yield
    finally:
        _restore(token)


def bind(**fields: object) -> None:
    """Add ``user_id`` and/or ``trace_id`` to the current job's lines from now on."""
    unknown = sorted(set(fields) - set(CONTEXT_FIELDS))
    if unknown:
        raise TypeError(f"bind() takes only {', '.join(CONTEXT_FIELDS)}; got {unknown}")
    _fields.set(MappingProxyType({**_fields.get(), **fields}))


def log_context() -> dict[str, object]:
    """The current fields, every one present (None when unset)."""
    current = _fields.get()
    return {name: current.get(name) for name in CONTEXT_FIELDS}


def _restore(token: Token[Mapping[str, object]]) -> None:
    try:
        _fields.reset(token)
    except ValueError:
        # Left in another context than it was entered in (an async generator closed by
        # the loop's finaliser task): put back what was there before, in this one.
        old = token.old_value
        _fields.set(_EMPTY if old is Token.MISSING else old)


class JobContextFilter(logging.Filter):
    """Copies the job context onto each record; ``extra=`` values win."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in log_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class TextLogFormatter(logging.Formatter):
    """``time LEVEL logger: message [job=... user=...]`` then any traceback, redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (an override)
        tags = [
            f"{_SHORT[name]}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        line = super().formatMessage(record)
        return f"{line} [{' '.join(tags)}]" if tags else line

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, the job context,
    exc_info (the traceback as a string, or null), then any ``extra=`` fields.

    Redaction runs on the decoded final object, every string in it, so a mask can
    never break the JSON and an escaped secret is masked like a plain one.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(
            ["levelname", "name", "message", *CONTEXT_FIELDS],
            timestamp=True,
            rename_fields={"levelname": "level", "name": "logger"},
        )
        self.redactor = redactor

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        first = ("timestamp", "level", "logger", "message", *CONTEXT_FIELDS, "exc_info")
        ordered = {key: log_data.get(key) for key in first}
        return ordered | {k: v for k, v in log_data.items() if k not in ordered}

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        decoded = json.loads(super().jsonify_log_record(log_data))
        stamp = decoded.get("timestamp")
        if isinstance(stamp, str) and _OUR_TIMESTAMP.fullmatch(stamp):
            del decoded["timestamp"]
            return json.dumps({"timestamp": stamp} | self.redactor.tree(decoded))
        return json.dumps(self.redactor.tree(decoded))


def configure_logging(
    settings: Settings | None = None, *, level: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Replace whatever ``import runpod`` configured (it sets root logging at import).

    Format, level and the secrets to mask come from ``settings``; without them (an
    admin command whose settings are invalid), text at INFO with the patterns only.
    ``level`` overrides the settings' level. Returns the one handler installed.
    """
    redactor = Redactor(settings.secret_values() if settings else ())
    json_lines = settings is not None and settings.log_format == "json"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter(redactor) if json_lines else TextLogFormatter(redactor))
    handler.addFilter(JobContextFilter())
    chosen = level or (settings.log_level if settings else "INFO")
    logging.basicConfig(level=chosen.upper(), handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
