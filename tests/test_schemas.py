"""The public input contract, tested without any I/O: parse_job and the duration estimate."""

from __future__ import annotations

from typing import Any

import pytest

from odeatts.errors import InvalidRequest, Unauthorized
from odeatts.estimate import estimate_ms
from odeatts.schemas import (
    EMOTIONS,
    LANGUAGE_BOOSTS,
    MODEL_EMOTIONS,
    MODELS,
    SpeechRequest,
    UsageRequest,
    VoicesRequest,
    check_emotion,
    parse_job,
)

KEY = "odea_AbCd1234_" + "k" * 32
MAX = 5000


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "job-1", "input": {"api_key": KEY, **fields}}


def speech(**fields: Any) -> dict[str, Any]:
    return job(**{"text": "Hello from Lagos.", "voice": "nigerian-female", **fields})


def invalid(raw: Any, max_text_chars: int = MAX) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_job(raw, max_text_chars=max_text_chars)
    assert info.value.code == "invalid_request" and info.value.status == 400
    return info.value


def test_speech_defaults() -> None:
    parsed = parse_job(speech(), max_text_chars=MAX)
    request = parsed.request
    assert parsed.id == "job-1" and isinstance(request, SpeechRequest)
    assert request.action == "speech" and request.api_key.get_secret_value() == KEY
    assert (request.speed, request.pitch, request.volume) == (1.0, 0, 1.0)
    assert (request.sample_rate, request.bitrate, request.format) == (32000, 128000, "mp3")
    assert request.emotion is None and request.model is None and request.language_boost is None


def test_speech_accepts_every_documented_field() -> None:
    request = parse_job(
        speech(
            speed=0.5,
            pitch=-12,
            volume=10,
            emotion="calm",
            model="speech-02-hd",
            sample_rate=44100,
            bitrate=256000,
            format="mp3",
            language_boost="English",
        ),
        max_text_chars=MAX,
    ).request
    assert isinstance(request, SpeechRequest)
    assert (request.speed, request.pitch, request.volume) == (0.5, -12, 10)
    assert (request.emotion, request.model, request.sample_rate) == ("calm", "speech-02-hd", 44100)


def test_text_is_stripped() -> None:
    request = parse_job(job(text="  Hi.  ", voice=" british-male "), max_text_chars=MAX).request
    assert isinstance(request, SpeechRequest)
    assert (request.text, request.voice) == ("Hi.", "british-male")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"speed": 0.49}, "speed"),
        ({"speed": 2.01}, "speed"),
        ({"speed": "fast"}, "speed"),
        ({"pitch": -13}, "pitch"),
        ({"pitch": 13}, "pitch"),
        ({"volume": 0}, "volume"),
        ({"volume": 10.5}, "volume"),
        ({"emotion": "ecstatic"}, "emotion"),
        ({"model": "speech-99"}, "model"),
        ({"sample_rate": 12345}, "sample_rate"),
        ({"bitrate": 1}, "bitrate"),
        ({"format": "ogg"}, "format"),
        ({"language_boost": "x" * 33}, "language_boost"),
        ({"voice": "v" * 65}, "voice"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
    ],
)
def test_out_of_range_fields_are_named(fields: dict[str, Any], field: str) -> None:
    exc = invalid(speech(**fields))
    assert exc.details["field"] == field
    assert field in exc.message


@pytest.mark.parametrize("boost", ["auto", "English", "Chinese,Yue", "Afrikaans", "Nynorsk"])
def test_language_boost_takes_minimax_s_list(boost: str) -> None:
    request = parse_job(speech(language_boost=boost), max_text_chars=MAX).request
    assert isinstance(request, SpeechRequest) and request.language_boost == boost


@pytest.mark.parametrize(
    ("boost", "hint"),
    [
        ("Yoruba", ""),
        ("Pidgin", ""),
        ("en", ""),
        ("english", "did you mean 'English'?"),
        ("Cantonese", ""),
        ("AUTO", "did you mean 'auto'?"),
        ("Chinese, Yue", ""),
    ],
)
def test_a_language_boost_minimax_would_refuse_is_refused_first(boost: str, hint: str) -> None:
    exc = invalid(speech(language_boost=boost))
    assert exc.details["field"] == "language_boost" and "language_boost" in exc.message
    assert hint in exc.message


def test_the_language_boost_list_is_minimax_s_forty_plus_auto() -> None:
    assert len(LANGUAGE_BOOSTS) == 41 == len(set(LANGUAGE_BOOSTS)) and LANGUAGE_BOOSTS[0] == "auto"


@pytest.mark.parametrize("emotion", sorted(MODEL_EMOTIONS))
@pytest.mark.parametrize("model", MODELS)
def test_an_emotion_the_model_lacks_is_refused_naming_emotion(emotion: str, model: str) -> None:
    raw = speech(emotion=emotion, model=model)
    if model in MODEL_EMOTIONS[emotion]:
        request = parse_job(raw, max_text_chars=MAX).request
        assert isinstance(request, SpeechRequest) and request.emotion == emotion
        return
    exc = invalid(raw)
    assert exc.details == {"field": "emotion"}
    assert emotion in exc.message and model in exc.message and "speech-2.6-hd" in exc.message


def test_every_other_emotion_works_with_every_model() -> None:
    for emotion in set(EMOTIONS) - set(MODEL_EMOTIONS):
        for model in MODELS:
            check_emotion(emotion, model)
    check_emotion(None, "speech-01-turbo")


def test_missing_text_is_named() -> None:
    raw = speech()
    del raw["input"]["text"]
    assert invalid(raw).details["field"] == "text"


def test_voice_may_be_left_out_for_the_users_default() -> None:
    raw = speech()
    del raw["input"]["voice"]
    parsed = parse_job(raw, max_text_chars=MAX).request
    assert isinstance(parsed, SpeechRequest) and parsed.voice is None


def test_unknown_fields_are_refused() -> None:
    exc = invalid(speech(sped=1.2))
    assert exc.details["field"] == "sped"
    assert "sped" in exc.message


def test_unknown_fields_are_refused_for_other_actions_too() -> None:
    assert invalid(job(action="voices", text="hello")).details["field"] == "text"
    assert invalid(job(action="usage", voice="x")).details["field"] == "voice"


def test_unknown_action_is_named() -> None:
    exc = invalid(job(action="dance"))
    assert exc.details["field"] == "action"


def test_voices_action() -> None:
    request = parse_job(job(action="voices"), max_text_chars=MAX).request
    assert isinstance(request, VoicesRequest)
    assert request.language is None and request.gender is None
    request = parse_job(
        job(action="voices", language="en-NG", gender="female"), max_text_chars=MAX
    ).request
    assert isinstance(request, VoicesRequest)
    assert (request.language, request.gender) == ("en-NG", "female")
    assert invalid(job(action="voices", gender="robot")).details["field"] == "gender"


def test_usage_action() -> None:
    request = parse_job(job(action="usage"), max_text_chars=MAX).request
    assert isinstance(request, UsageRequest) and request.limit == 10
    request = parse_job(job(action="usage", limit=100), max_text_chars=MAX).request
    assert isinstance(request, UsageRequest) and request.limit == 100
    assert invalid(job(action="usage", limit=0)).details["field"] == "limit"
    assert invalid(job(action="usage", limit=101)).details["field"] == "limit"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "job",
        {"input": {"api_key": KEY}},
        {"id": "", "input": {"api_key": KEY}},
        {"id": 7, "input": {"api_key": KEY}},
    ],
    ids=["none", "list", "str", "no-id", "empty-id", "int-id"],
)
def test_job_without_an_id_is_invalid(raw: Any) -> None:
    assert invalid(raw).details["field"] == "id"


@pytest.mark.parametrize(
    "job_id",
    ["a\ud800b", "job\x00", "x" * 129, "two words", "-leading-dash", "é-accent", "job\n"],
    ids=["surrogate", "nul", "129-chars", "space", "dash", "accent", "newline"],
)
def test_a_job_id_runpod_would_never_send_is_invalid(job_id: str) -> None:
    assert invalid({"id": job_id, "input": {"api_key": KEY}}).details["field"] == "id"


@pytest.mark.parametrize(
    "job_id",
    [
        "7b1e5d3a-9f0c-4a57-8a43-1a2b3c4d5e6f-u1",
        "sync-7b1e5d3a-9f0c-4a57-8a43-1a2b3c4d5e6f-e1",
        "test-7b1e5d3a-9f0c-4a57-8a43-1a2b3c4d5e6f",
        "local_test",
        "x" * 128,
    ],
)
def test_runpods_job_ids_are_accepted(job_id: str) -> None:
    assert parse_job({**speech(), "id": job_id}, max_text_chars=MAX).id == job_id


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"speed": True}, "speed"),
        ({"speed": "1.5"}, "speed"),
        ({"pitch": "3"}, "pitch"),
        ({"pitch": 3.5}, "pitch"),
        ({"pitch": False}, "pitch"),
        ({"volume": "2"}, "volume"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"sample_rate": "32000"}, "sample_rate"),
        ({"bitrate": True}, "bitrate"),
        ({"text": 42}, "text"),
        ({"voice": ["british-male"]}, "voice"),
    ],
)
def test_json_types_are_strict_and_the_field_is_named(fields: dict[str, Any], field: str) -> None:
    exc = invalid(speech(**fields))
    assert exc.details["field"] == field and f"`{field}`" in exc.message


@pytest.mark.parametrize("limit", ["5", 5.0, True])
def test_usage_limit_must_be_a_json_integer(limit: Any) -> None:
    assert invalid(job(action="usage", limit=limit)).details["field"] == "limit"


def test_a_whole_number_is_a_valid_number() -> None:
    request = parse_job(speech(speed=1, volume=2), max_text_chars=MAX).request
    assert isinstance(request, SpeechRequest) and (request.speed, request.volume) == (1.0, 2.0)


@pytest.mark.parametrize("payload", [None, "text", ["a"], 3])
def test_non_dict_input_is_invalid(payload: Any) -> None:
    assert invalid({"id": "job-1", "input": payload}).details["field"] == "input"


def test_missing_input_is_invalid() -> None:
    assert invalid({"id": "job-1"}).details["field"] == "input"


@pytest.mark.parametrize("api_key", [None, "", 42])
def test_missing_api_key_is_unauthorized(api_key: Any) -> None:
    fields = {"text": "Hi.", "voice": "british-male"}
    if api_key is not None:
        fields["api_key"] = api_key
    with pytest.raises(Unauthorized) as info:
        parse_job({"id": "job-1", "input": fields}, max_text_chars=MAX)
    assert info.value.code == "unauthorized" and info.value.status == 401


def test_missing_api_key_wins_over_other_bad_fields() -> None:
    with pytest.raises(Unauthorized):
        parse_job({"id": "job-1", "input": {"sped": 9}}, max_text_chars=MAX)


def test_max_text_chars_is_enforced_with_the_limit_in_details() -> None:
    assert isinstance(parse_job(speech(text="x" * 100), max_text_chars=100).request, SpeechRequest)
    exc = invalid(speech(text="x" * 101), max_text_chars=100)
    assert exc.details == {"field": "text", "max_chars": 100}
    assert "100" in exc.message and "101" in exc.message


# --- estimate_ms -------------------------------------------------------------------------

SENTENCE = "The market in Lagos opens at nine and closes when the last trader goes home. "


def test_estimate_grows_with_text_length() -> None:
    assert estimate_ms(SENTENCE * 2) > estimate_ms(SENTENCE) > estimate_ms("Hi there.")
    assert estimate_ms(SENTENCE * 10) > 5 * estimate_ms(SENTENCE)


def test_estimate_is_about_150_words_a_minute() -> None:
    text = " ".join(["word"] * 150)
    assert 60_000 <= estimate_ms(text) <= 75_000


def test_estimate_shrinks_with_speed() -> None:
    slow, normal, fast = (estimate_ms(SENTENCE * 4, speed) for speed in (0.5, 1.0, 2.0))
    assert slow > normal > fast
    assert slow == pytest.approx(2 * normal, rel=0.01)
    assert fast == pytest.approx(normal / 2, rel=0.01)


def test_pause_markers_add_their_seconds() -> None:
    text = SENTENCE * 2
    halves = SENTENCE.strip() + " <#1.5#> " + SENTENCE.strip()
    assert estimate_ms(halves) - estimate_ms(text) == pytest.approx(1500, abs=5)
    assert estimate_ms(text + "<#2#>") - estimate_ms(text) == pytest.approx(2000, abs=5)


def test_pause_markers_are_not_spoken_words() -> None:
    assert estimate_ms("<#1.5#>") == 1500


def test_estimate_has_a_floor_of_half_a_second() -> None:
    assert estimate_ms("Hi") == 500
    assert estimate_ms("") == 500
    assert estimate_ms("Hi", speed=2.0) == 500


# ------------------------------------------------- issue 12: new options, OpenAI's shape
def test_timestamps_normalize_and_effects_are_read() -> None:
    request = parse_job(
        speech(
            timestamps=True,
            normalize=True,
            effects={"pitch": -100, "timbre": 100, "sound_effect": "robotic"},
        ),
        max_text_chars=MAX,
    ).request
    assert isinstance(request, SpeechRequest)
    assert request.timestamps and request.normalize and request.effects is not None
    assert (request.effects.pitch, request.effects.intensity) == (-100, None)
    assert request.effects.sound_effect == "robotic"


@pytest.mark.parametrize(
    ("effects", "field"),
    [
        ({}, "effects"),
        ({"pitch": 101}, "effects.pitch"),
        ({"intensity": -101}, "effects.intensity"),
        ({"timbre": 1.5}, "effects.timbre"),
        ({"sound_effect": "echo"}, "effects.sound_effect"),
        ({"sound_effects": "robotic"}, "effects.sound_effects"),
        ("robotic", "effects"),
    ],
)
def test_effects_outside_minimax_s_ranges_are_refused(effects: Any, field: str) -> None:
    assert invalid(speech(effects=effects)).details["field"] == field


@pytest.mark.parametrize("value", ["yes", 1])
def test_timestamps_and_normalize_are_booleans(value: Any) -> None:
    assert invalid(speech(timestamps=value)).details["field"] == "timestamps"
    assert invalid(speech(normalize=value)).details["field"] == "normalize"


@pytest.mark.parametrize("fmt", ["ulaw", "ulaw_wav"])
def test_mu_law_is_8000_hz_by_default_and_only(fmt: str) -> None:
    request = parse_job(speech(format=fmt), max_text_chars=MAX).request
    assert isinstance(request, SpeechRequest) and request.sample_rate == 8000
    assert parse_job(speech(format=fmt, sample_rate=8000), max_text_chars=MAX).request
    assert invalid(speech(format=fmt, sample_rate=16000)).details["field"] == "sample_rate"


def test_raw_mu_law_streams_and_mu_law_wav_does_not() -> None:
    assert parse_job(speech(format="ulaw", stream=True), max_text_chars=MAX).request
    assert invalid(speech(format="ulaw_wav", stream=True)).details["field"] == "stream"


def openai(**fields: Any) -> dict[str, Any]:
    return job(**{"input": "Hello from Lagos.", "voice": "alloy", **fields})


def test_openai_s_speech_request_is_a_speech_job() -> None:
    request = parse_job(
        openai(response_format="wav", speed=1.25, model="tts-1"), max_text_chars=MAX
    ).request
    assert isinstance(request, SpeechRequest)
    assert (request.text, request.voice, request.format) == ("Hello from Lagos.", "alloy", "wav")
    assert (request.speed, request.model) == (1.25, "speech-02-turbo")


@pytest.mark.parametrize(
    ("model", "default", "ours"),
    [
        ("tts-1", "speech-02-turbo", "speech-02-turbo"),
        ("tts-1-hd", "speech-02-turbo", "speech-02-hd"),
        ("tts-1", "speech-2.6-hd", "speech-2.6-turbo"),
        ("tts-1-hd", "speech-2.8-hd", "speech-2.8-hd"),
        ("speech-01-hd", "speech-02-turbo", "speech-01-hd"),  # one of ours, as it is
    ],
)
def test_openai_s_models_are_siblings_of_our_default(model: str, default: str, ours: str) -> None:
    request = parse_job(openai(model=model), max_text_chars=MAX, default_model=default).request
    assert isinstance(request, SpeechRequest) and request.model == ours


def test_openai_s_pcm_is_24_khz_and_its_default_format_is_mp3() -> None:
    pcm = parse_job(openai(response_format="pcm"), max_text_chars=MAX).request
    plain = parse_job(openai(), max_text_chars=MAX).request
    assert isinstance(pcm, SpeechRequest) and (pcm.format, pcm.sample_rate) == ("pcm", 24000)
    assert isinstance(plain, SpeechRequest) and plain.format == "mp3"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": "Hi"}, "text"),  # both shapes
        ({"format": "wav"}, "format"),
        ({"pitch": 2}, "pitch"),
        ({"instructions": "cheerful"}, "instructions"),
        ({"response_format": "opus"}, "response_format"),
        ({"response_format": "aac"}, "response_format"),
        ({"input": 5}, "input"),
        ({"speed": 4.0}, "speed"),  # OpenAI allows 4; MiniMax 2
        ({"model": "gpt-4o-mini-tts"}, "model"),
        ({"model": ["tts-1"]}, "model"),  # not a name at all: refused, not a TypeError
        ({"model": {"name": "tts-1"}}, "model"),
    ],
)
def test_openai_s_shape_mixed_with_ours_or_out_of_range_is_refused(
    fields: dict[str, Any], field: str
) -> None:
    assert invalid(openai(**fields)).details["field"] == field


def test_response_format_alone_is_openai_s_shape_too() -> None:
    error = invalid(speech(response_format="mp3"))
    assert error.details["field"] == "text"
