"""Whatever a caller sends, the answer is audio or a documented error (issue 8).

A fuzz test (hypothesis) throws job inputs of every JSON shape at the worker on real
Postgres and Redis: odd ids, wrong types, surrogates and NULs in text, unknown fields.
Every outcome must be a success or a known code, never ``internal`` and never a
false outage; no key appears in an output or in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odeatts import accounts
from odeatts.config import Settings
from odeatts.errors import ERROR_CODES
from odeatts.models import User
from odeatts.schemas import BITRATES, EMOTIONS, MODELS, SAMPLE_RATES, SOUND_EFFECTS, ULAW_FORMATS
from odeatts.worker import Worker
from tests.conftest import EMULATOR_KEY, JobRunner, UserFactory

pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)


@pytest.mark.parametrize("job_id", ["job\x00", "a\ud800b", "x" * 129])
async def test_an_odd_job_id_is_invalid_request_not_an_outage(
    worker: Worker,
    make_user: UserFactory,
    run_job: JobRunner,
    job_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    _, key = await make_user()
    out = await run_job(job_id, api_key=key, text="Hello.", voice="british-male")
    assert (out["error"]["code"], out["error"]["field"]) == ("invalid_request", "id")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("field", "value"), [("speed", True), ("pitch", "3"), ("stream", "yes")])
async def test_a_string_or_bool_where_a_number_belongs_is_named(
    make_user: UserFactory, run_job: JobRunner, field: str, value: Any
) -> None:
    _, key = await make_user()
    out = await run_job(api_key=key, text="Hello.", voice="british-male", **{field: value})
    assert (out["error"]["code"], out["error"]["field"]) == ("invalid_request", field)


# --- the fuzz ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
TEXT = st.text(st.characters(codec=None), min_size=0, max_size=80) | st.sampled_from(
    ["Hello.", "<#0.5#> pause", "\x00", "\ud800", "a" * 300]
)
FRESH = "<a fresh RunPod id>"  # most jobs get a new id; repeats are duplicates, on purpose
IDS = st.one_of(
    st.just(FRESH),
    st.just(FRESH),
    st.text(max_size=12),
    st.sampled_from(["job-1", "sync-abc-e1", "", "a\x00", "\udfff", "x" * 200]),
)
VOICES = [
    "british-male",
    "british-female",
    "american-male",
    "american-female",
    "nigerian-male",
    "nigerian-female",
]


VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "speed": st.floats(0.5, 2.0),
    "pitch": st.integers(-12, 12),
    "volume": st.floats(0.1, 10),
    "emotion": st.sampled_from(EMOTIONS),
    "format": st.sampled_from(["mp3", "wav", "pcm", *ULAW_FORMATS]),
    "sample_rate": st.sampled_from(SAMPLE_RATES),
    "bitrate": st.sampled_from(BITRATES),
    "output": st.sampled_from(["auto", "base64"]),
    "model": st.sampled_from(MODELS),
    "language_boost": st.sampled_from(["English", "auto"]),
    # Issue 12's and 15's options.
    "timestamps": st.booleans(),
    "normalize": st.booleans(),
    "cache": st.booleans(),
    "effects": st.fixed_dictionaries(
        {},
        optional={
            "pitch": st.integers(-100, 100),
            "intensity": st.integers(-100, 100),
            "timbre": st.integers(-100, 100),
            "sound_effect": st.sampled_from(SOUND_EFFECTS),
        },
    ).filter(bool),
    "pronunciations": st.dictionaries(
        st.text(st.characters(categories=["L"]), min_size=1, max_size=12),
        st.text(st.characters(categories=["L", "Pd"]), min_size=1, max_size=20),
        max_size=3,
    ),
}
WILD_FIELDS = [
    *VALID_FIELDS,
    "text",
    "voice",
    "api_key",
    "action",
    "stream",
    "limit",
    "language",
    "gender",
    "unknown",
    "input",  # OpenAI's shape, mixed with ours or alone
    "response_format",
]


def job_inputs(key: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid jobs, valid jobs with one field made wrong, and jobs of any shape."""
    valid = st.fixed_dictionaries(
        {
            "api_key": st.just(key),
            "voice": st.sampled_from(VOICES),
            "text": st.text(
                st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=60
            ),
        },
        optional=VALID_FIELDS,
    )
    mutated = st.builds(
        lambda job, name, value: {**job, name: value},
        valid,
        st.sampled_from(WILD_FIELDS),
        JSON | TEXT,
    )
    wild = st.dictionaries(
        st.sampled_from(WILD_FIELDS) | st.text(max_size=8), JSON | TEXT, max_size=6
    )
    return st.one_of(valid, valid, mutated, wild)


@pytest.fixture
def fuzz_worker(make_settings: Callable[..., Settings]) -> Iterator[tuple[Worker, Any]]:
    """Hypothesis drives a synchronous test: the worker gets a loop of its own. Our
    account's MiniMax limits are off, so the fuzz reaches synthesis, not a queue; the audio
    cache is on, as in production."""
    loop = asyncio.new_event_loop()
    worker = Worker(make_settings(MINIMAX_RPM_LIMIT=0, MINIMAX_TPM_LIMIT=0, ODEATTS_CACHE=True))
    yield worker, loop
    loop.run_until_complete(worker.aclose())
    loop.close()


async def unlimited_user(worker: Worker) -> str:
    """A caller whose plan never refuses, so the fuzz reaches every step of the job."""
    created = await accounts.create_user(
        worker.pipeline().sessions,
        name="Fuzz",
        email="fuzz@example.com",
        plan="pro",
        pepper=worker.settings.pepper,
    )
    async with worker.pipeline().sessions() as session, session.begin():
        user = await session.get(User, created.user.id)
        assert user is not None
        user.rpm_override, user.streams_override = 100_000, 100
        user.monthly_seconds_override = 10_000_000
    return created.key.plain


def test_fuzzed_jobs_get_audio_or_a_documented_error(
    fuzz_worker: tuple[Worker, Any], caplog: pytest.LogCaptureFixture
) -> None:
    worker, loop = fuzz_worker
    caplog.set_level(logging.INFO)
    key = loop.run_until_complete(unlimited_user(worker))

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(job_id=IDS, job_input=job_inputs(key))
    def one(job_id: str, job_input: dict[str, Any]) -> None:
        if job_id == FRESH:
            job_id = f"{uuid.uuid4()}-u1"
        result = loop.run_until_complete(worker.handle({"id": job_id, "input": job_input}))
        wire = json.dumps(result)
        assert key not in wire and EMULATOR_KEY not in wire and "Traceback" not in wire
        if "error" in result:
            error = json.loads(result["error"])
            assert error["code"] in ERROR_CODES and error["code"] != "internal", error
            assert error["code"] != "service_unavailable", error  # no false outage

    one()
    logged = caplog.text
    assert key not in logged and EMULATOR_KEY not in logged
    assert not [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("odeatts")
    ]
