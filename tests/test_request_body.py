"""SpeechParams.body: the one place every setting of a t2a_v2 request is built (a future
audio cache keys on these). Pure; the documented field names are pinned by the contract
tests (tests/contract/test_client_contract.py)."""

from __future__ import annotations

from odeatts.minimax import SpeechParams

BASE = SpeechParams(text="Hi.", voice_id="English_Graceful_Lady", model="speech-02-turbo")


def test_a_plain_body_has_no_optional_setting() -> None:
    body = BASE.body()
    assert body["stream"] is False and body["output_format"] == "hex"
    for key in ("subtitle_enable", "subtitle_type", "voice_modify", "stream_options"):
        assert key not in body
    assert "text_normalization" not in body["voice_setting"]


def test_a_stream_body_is_the_same_settings_streamed() -> None:
    plain, streamed = BASE.body(), BASE.body(stream=True)
    assert streamed["stream"] is True and "output_format" not in streamed
    assert streamed["stream_options"] == {"exclude_aggregated_audio": True}
    common = set(plain) - {"stream", "output_format"}
    assert {k: plain[k] for k in common} == {k: streamed[k] for k in common}


def test_every_option_lands_in_minimax_s_fields() -> None:
    params = SpeechParams(
        text="Hi.",
        voice_id="v",
        model="speech-2.6-hd",
        format="ulaw",
        sample_rate=8000,
        normalize=True,
        subtitles=True,
        voice_modify=(("intensity", 30), ("sound_effects", "spacious_echo")),
    )
    body = params.body()
    assert body["audio_setting"]["format"] == "pcmu_raw"
    assert body["audio_setting"]["sample_rate"] == 8000
    assert body["voice_setting"]["text_normalization"] is True
    assert body["voice_modify"] == {"intensity": 30, "sound_effects": "spacious_echo"}
    assert (body["subtitle_enable"], body["subtitle_type"]) == (True, "word")


def test_sentence_level_subtitles_on_models_without_word_level() -> None:
    body = SpeechParams(text="Hi.", voice_id="v", model="speech-02-hd", subtitles=True).body()
    assert body["subtitle_enable"] is True and "subtitle_type" not in body
