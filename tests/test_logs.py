"""The log filter is the second line of defence: no key, token or password reaches a log."""

from __future__ import annotations

import logging

import pytest

from odeatts.keys import generate_key
from odeatts.logs import RedactSecrets, redact

KEY = generate_key(b"pepper").plain


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
    "text",
    [
        "job job-1 succeeded in 1.2 s",
        "odea_short is not a key",
        "https://api.minimax.io/v1/t2a_v2",
        "postgresql+psycopg://odea@db:5432/odeatts",
    ],
)
def test_redact_leaves_harmless_text_alone(text: str) -> None:
    assert redact(text) == text


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("odeatts.test", logging.INFO, __file__, 1, msg, args, None)


def test_filter_rewrites_a_record_whose_args_hold_a_key() -> None:
    rec = record("job %s: unknown key %s", "job-1", KEY)
    assert RedactSecrets().filter(rec) is True
    message = rec.getMessage()
    assert KEY not in message
    assert message == "job job-1: unknown key odea_[redacted]"
    assert rec.args is None


def test_filter_rewrites_secrets_in_the_format_string() -> None:
    rec = record(f"failed with Bearer abc123 for {KEY}")
    RedactSecrets().filter(rec)
    assert "abc123" not in rec.getMessage() and KEY not in rec.getMessage()


def test_filter_leaves_clean_records_untouched() -> None:
    rec = record("job %s took %d ms", "job-1", 250)
    assert RedactSecrets().filter(rec) is True
    assert rec.msg == "job %s took %d ms" and rec.args == ("job-1", 250)


def test_filter_on_a_handler_keeps_keys_out_of_the_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("odeatts.test.redact")
    redactor = RedactSecrets()
    caplog.handler.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("caller sent %r", {"api_key": KEY})
    finally:
        caplog.handler.removeFilter(redactor)
    assert KEY not in caplog.text
    assert "odea_[redacted]" in caplog.text
