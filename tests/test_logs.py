"""Logs: no key, token or password reaches the output, whatever a caller logs (message,
traceback, text or JSON), and every line says which job, user and MiniMax trace it is
about. Output is read from the configured handler's own stream: caplog would bypass
the formatter, which is where redaction happens."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from odeatts.config import Settings
from odeatts.keys import generate_key
from odeatts.logs import bind, configure_logging, job_context, log_context, redact
from odeatts.redaction import MASK, Redactor
from odeatts.worker import Worker
from tests.conftest import UserFactory, backend_independent

KEY = generate_key(b"pepper").plain
log = logging.getLogger("odeatts.test.logs")


# --- redact(): the shapes --------------------------------------------------------------


def test_redact_masks_api_keys() -> None:
    text = redact(f"unknown key {KEY} from caller")
    assert KEY not in text and KEY[5:13] not in text
    assert text == "unknown key odea_[redacted] from caller"


def test_redact_masks_every_key_in_a_message() -> None:
    other = generate_key(b"pepper").plain
    text = redact(f"{KEY},{other}")
    assert KEY not in text and other not in text and text.count("[redacted]") == 2


def test_redact_masks_bearer_tokens() -> None:
    text = redact("headers={'Authorization': 'Bearer mm-secret-token.123'}")
    assert "mm-secret-token" not in text
    assert "Bearer [redacted]" in text
    assert "mm-secret" not in redact("authorization: bearer mm-secret")


def test_redact_masks_url_passwords() -> None:
    text = redact("connecting to postgresql+psycopg://odea:s3cr%40t@db.internal:5432/odeatts")
    assert "s3cr" not in text
    assert text == "connecting to postgresql+psycopg://odea:[redacted]@db.internal:5432/odeatts"
    assert "hunter2" not in redact("redis://default:hunter2@cache:6379/0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw2@h:6379/0", "redis://:[redacted]@h:6379/0"),
        ("rediss://user:pw3@h", "rediss://user:[redacted]@h"),
        ("amqp://u:p@ss@h/vhost", "amqp://u:[redacted]@h/vhost"),
        ("'redis://:pw@h' and 'a@b'", "'redis://:[redacted]@h' and 'a@b'"),
        ("https://x/y?api_key=pw4&token=pw5", "https://x/y?api_key=[redacted]&token=[redacted]"),
        (
            "?password=a&key=b&secret=c&access_key=d",
            "?password=[redacted]&key=[redacted]&secret=[redacted]&access_key=[redacted]",
        ),
        (
            "host=db user=odea password=hunter2 dbname=odeatts",
            "host=db user=odea password=[redacted] dbname=odeatts",
        ),
        (
            "https://b.s3.example.com/a.mp3?X-Amz-Credential=AKIA%2F1&X-Amz-Date=20250101"
            "&X-Amz-Signature=f00d",
            "https://b.s3.example.com/a.mp3?X-Amz-Credential=[redacted]&X-Amz-Date=20250101"
            "&X-Amz-Signature=[redacted]",
        ),
        ("{'api_key': 'odea_short', 'voice': 'x'}", "{'api_key': '[redacted]', 'voice': 'x'}"),
        ('{"password": "a\\"b", "n": 1}', '{"password": "[redacted]", "n": 1}'),
        (
            "{'X-Api-Key': 'k', 'authorization': 'Basic dTpw'}",
            "{'X-Api-Key': '[redacted]', 'authorization': '[redacted]'}",
        ),
    ],
)
def test_redact_masks_every_secret_shape(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "job job-1 succeeded in 1.2 s",
        "odea_short is not a key",
        "https://api.minimax.io/v1/t2a_v2",
        "postgresql+psycopg://odea@db:5432/odeatts",
        "monkey=banana secretary=ada",
        "voice british-male: 1200 ms charged (trace 01b8)",
    ],
)
def test_redact_leaves_harmless_text_alone(text: str) -> None:
    assert redact(text) == text


def test_literal_secrets_are_masked_wherever_they_appear() -> None:
    redactor = Redactor(["mm-literal-key-0123", "mm-literal", "abc"])
    text = redactor.text("sent mm-literal-key-0123; mm-literal alone; abc is too short")
    assert text == f"sent {MASK}; {MASK} alone; abc is too short"


# --- configure_logging(): the real handler's output ------------------------------------

MINIMAX_KEY = "mm-configured-key-7f3a9c"
# Quotes and a backslash: JSON escapes them, and the escaped form must not leak either.
PEPPER = 'pepper"with\\quote-0123456789abcdef-0123456789'
LEAKS = [
    f"key {KEY}",
    "db postgresql://u:pw1@h/db",
    "cache redis://:pw2@h:6379/0",
    "tls rediss://user:pw3@h",
    "url https://x/y?api_key=pw4&token=pw5",
    "header Authorization: Bearer pw6",
    f"minimax {MINIMAX_KEY}",
    f"pepper {PEPPER}",
    "driver said pw-db-literal",
]
SECRET_VALUES = [
    KEY,
    "pw1",
    "pw2",
    "pw3",
    "pw4",
    "pw5",
    "pw6",
    MINIMAX_KEY,
    PEPPER,
    json.dumps(PEPPER)[1:-1],
    "pw-db-literal",
]


@pytest.fixture
def output() -> Iterator[Callable[..., io.StringIO]]:
    """``output(settings)`` configures logging onto a fresh stream and returns it; the
    root logger is restored afterwards (pytest's own handlers included)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quietened = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "aiosqlite")}

    def configure(settings: Settings | None = None, level: str | None = None) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(settings, level=level, stream=stream)
        return stream

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in quietened.items():
        logging.getLogger(name).setLevel(was)


def settings_for(log_format: str) -> Settings:
    return Settings(
        ODEATTS_ENV="test",
        ODEATTS_LOG_FORMAT=log_format,
        MINIMAX_API_KEY=MINIMAX_KEY,
        ODEATTS_KEY_PEPPER=PEPPER,
        DATABASE_URL="postgresql://odea:pw-db-literal@db/odeatts",
        REDIS_URL="rediss://:pw-redis-literal@cache:6380/0",
    )


def crash(leaks: list[str]) -> None:
    """A chained exception: each link's text carries half of the secrets."""
    half = len(leaks) // 2
    try:
        raise ConnectionError("; ".join(leaks[:half]))
    except ConnectionError as inner:
        raise RuntimeError("; ".join(leaks[half:])) from inner


def log_a_leaky_exception() -> None:
    try:
        crash(LEAKS)
    except RuntimeError:
        log.exception("job crashed with %s", " | ".join(LEAKS))


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_reaches_the_output_from_a_message_or_a_traceback(
    output: Callable[..., io.StringIO], log_format: str
) -> None:
    stream = output(settings_for(log_format))
    log_a_leaky_exception()
    log.warning("stack too", stack_info=True, extra={"headers": {"api_key": KEY}})
    text = stream.getvalue()
    assert [secret for secret in SECRET_VALUES if secret in text] == []
    assert "Traceback" in text and "ConnectionError" in text and "RuntimeError" in text
    assert "odea_[redacted]" in text and "redis://:[redacted]@h" in text
    assert "Bearer [redacted]" in text and text.count(MASK) >= 2 * len(LEAKS)


def test_json_lines_parse_and_carry_the_redacted_traceback_as_a_string(
    output: Callable[..., io.StringIO],
) -> None:
    stream = output(settings_for("json"))
    log_a_leaky_exception()
    log.info(
        "plain line",
        extra={
            "headers": {"Authorization": "Basic dTpw", "password": "hunter2"},
            "voice": "british-male",
        },
    )
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(first)[:8] == [
        "timestamp",
        "level",
        "logger",
        "message",
        "job_id",
        "user_id",
        "trace_id",
        "exc_info",
    ]
    assert first["level"] == "ERROR" and first["logger"] == log.name
    assert first["message"].startswith("job crashed with key odea_[redacted]")
    assert isinstance(first["exc_info"], str) and "RuntimeError" in first["exc_info"]
    assert f"pepper {MASK}" in first["exc_info"]
    assert second["message"] == "plain line" and second["exc_info"] is None
    # extra= fields come last; a value under a secret's name is masked whatever it is.
    assert second["headers"] == {"Authorization": MASK, "password": MASK}
    assert second["voice"] == "british-male"


def test_text_without_settings_still_masks_the_shapes(output: Callable[..., io.StringIO]) -> None:
    stream = output()
    log.info("caller sent %r", {"api_key": KEY, "url": "redis://:pw2@h"})
    text = stream.getvalue()
    assert KEY not in text and "pw2" not in text
    assert text.rstrip().endswith(
        "caller sent {'api_key': '[redacted]', 'url': 'redis://:[redacted]@h'}"
    )


def test_the_chosen_level_applies(output: Callable[..., io.StringIO]) -> None:
    stream = output(settings_for("text"), level="CRITICAL")
    log.error("not shown")
    assert stream.getvalue() == ""


# --- job context -----------------------------------------------------------------------


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_job_user_and_trace(output: Callable[..., io.StringIO]) -> None:
    stream = output(settings_for("json"))
    with job_context("job-1"):
        log.info("parsed")
        bind(user_id=7)
        log.info("authorised")
        bind(trace_id="01b8c0ffee")
        log.info("synthesised")
    log.info("between jobs")
    contexts = [(line["job_id"], line["user_id"], line["trace_id"]) for line in json_lines(stream)]
    assert contexts == [
        ("job-1", None, None),
        ("job-1", 7, None),
        ("job-1", 7, "01b8c0ffee"),
        (None, None, None),
    ]


def test_text_lines_show_the_context_compactly(output: Callable[..., io.StringIO]) -> None:
    stream = output(settings_for("text"))
    with job_context("job-1"):
        bind(user_id=7, trace_id="01b8")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("charged")
    log.info("idle")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("odeatts.test.logs: charged [job=job-1 user=7 trace=01b8]")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1].endswith("odeatts.test.logs: idle")


def test_a_job_context_drops_what_was_bound_inside_it() -> None:
    with job_context("outer"):
        bind(user_id=1)
        with job_context("inner"):
            bind(trace_id="t")
            assert log_context() == {"job_id": "inner", "user_id": None, "trace_id": "t"}
        assert log_context() == {"job_id": "outer", "user_id": 1, "trace_id": None}
    assert log_context() == {"job_id": None, "user_id": None, "trace_id": None}


def test_bind_refuses_unknown_fields() -> None:
    with pytest.raises(TypeError, match="usr_id"):
        bind(usr_id=7)


async def test_concurrent_jobs_do_not_see_each_others_context(
    output: Callable[..., io.StringIO],
) -> None:
    stream = output(settings_for("json"))

    async def job(n: int) -> None:
        with job_context(f"job-{n}"):
            for step in range(5):
                if step == 2:
                    bind(user_id=n, trace_id=f"trace-{n}")
                log.info("job %d step %d", n, step)
                await asyncio.sleep(0)  # let the other job run in between

    await asyncio.gather(job(1), job(2))
    lines = json_lines(stream)
    assert len(lines) == 10
    for line in lines:
        n = int(line["message"].split()[1])
        step = int(line["message"].split()[3])
        assert line["job_id"] == f"job-{n}"
        assert (line["user_id"], line["trace_id"]) == (
            (n, f"trace-{n}") if step >= 2 else (None, None)
        )
    assert log_context()["job_id"] is None


# --- the worker opens the context ------------------------------------------------------


@backend_independent
async def test_the_plain_handler_tags_its_lines(
    output: Callable[..., io.StringIO], worker: Worker
) -> None:
    stream = output(settings_for("json"))
    await worker.handle(
        {"id": "plain-1", "input": {"api_key": KEY, "text": "Hi.", "voice": "british-male"}}
    )
    [failed] = [line for line in json_lines(stream) if "failed" in line["message"]]
    assert failed["job_id"] == "plain-1" and "unauthorized" in failed["message"]
    assert log_context()["job_id"] is None


@backend_independent
async def test_a_jobs_lines_carry_its_user_and_minimax_trace_once_known(
    output: Callable[..., io.StringIO], worker: Worker, make_user: UserFactory
) -> None:
    user_id, key = await make_user()
    stream = output(settings_for("json"))
    result = await worker.handle(
        {"id": "traced-1", "input": {"api_key": key, "text": "Hi.", "voice": "british-male"}}
    )
    assert "error" not in result
    [charged] = [line for line in json_lines(stream) if "charged" in line["message"]]
    assert (charged["job_id"], charged["user_id"]) == ("traced-1", user_id)
    assert charged["trace_id"] and charged["trace_id"] in charged["message"]


@backend_independent
async def test_lines_logged_while_streams_run_carry_their_own_job(
    output: Callable[..., io.StringIO],
    make_settings: Callable[..., Settings],
    make_user: UserFactory,
) -> None:
    """Two streams at once, each in its own task as RunPod runs them: the pipeline's
    charge line, logged inside the generator after the last chunk, names its own job."""
    keys = [(await make_user())[1] for _ in range(2)]  # a free plan runs one job at a time
    streamer = Worker(make_settings(ODEATTS_HANDLER="stream", ODEATTS_STREAM_CHUNK_BYTES=4096))
    stream = output(settings_for("json"))

    async def consume(job_id: str, key: str) -> None:
        job = {
            "id": job_id,
            "input": {
                "api_key": key,
                "text": "One sentence. And another.",
                "voice": "british-male",
                "stream": True,
            },
        }
        items = [item async for item in streamer.handler(job)]
        assert log_context()["job_id"] is None  # the finished job left nothing behind
        assert len(items) >= 2, items  # chunks, then the final item

    try:
        ids = [f"stream-{uuid.uuid4().hex[:6]}" for _ in range(2)]
        await asyncio.gather(*(consume(job_id, key) for job_id, key in zip(ids, keys, strict=True)))
    finally:
        await streamer.aclose()
    charged = [line for line in json_lines(stream) if "charged" in line["message"]]
    assert sorted(line["job_id"] for line in charged) == sorted(ids)
    for line in charged:
        assert line["message"].startswith(f"job {line['job_id']} ")


def test_production_logs_json_unless_told_text(
    output: Callable[..., io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    production = {
        "ODEATTS_ENV": "production",
        "DATABASE_URL": "postgresql://u:pw1@db/odeatts",
        "REDIS_URL": "redis://:pw2@cache:6379/0",
        "ODEATTS_KEY_PEPPER": "p" * 32,
        "MINIMAX_API_KEY": MINIMAX_KEY,
        "BUCKET_NAME": "b",
        "BUCKET_ENDPOINT_URL": "https://s3.example.com",
    }
    for name, value in production.items():
        monkeypatch.setenv(name, value)
    as_json = output(Settings())
    log.info("ready")
    assert json.loads(as_json.getvalue())["message"] == "ready"
    monkeypatch.setenv("ODEATTS_LOG_FORMAT", "text")
    as_text = output(Settings())
    log.info("ready")
    assert as_text.getvalue().rstrip().endswith("INFO odeatts.test.logs: ready")
