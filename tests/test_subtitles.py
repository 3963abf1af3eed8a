"""Word timings (odeatts/subtitles.py): MiniMax's subtitle file read strictly, fetched
only where it may be fetched, and put on the clock of the joined audio."""

from __future__ import annotations

import json

import httpx
import pytest

from odeatts.errors import UpstreamUnavailable
from odeatts.subtitles import (
    MAX_BYTES,
    SubtitleFetcher,
    Timing,
    check_url,
    offset_timings,
    parse_subtitles,
)

FILE = [{"text": "Hello", "time_begin": 0, "time_end": 420.5, "text_begin": 0}]


def test_the_documented_file_is_read_and_other_keys_pass() -> None:
    assert parse_subtitles(json.dumps(FILE).encode()) == [Timing("Hello", 0, 420.5)]
    assert parse_subtitles(b"[]") == []


@pytest.mark.parametrize(
    "body",
    [
        {"subtitles": FILE},  # not the flat list
        [{"text": "Hi", "time_begin": 0}],  # no end
        [{"text": "Hi", "time_begin": "0", "time_end": 5}],  # a string for a number
        [{"text": "Hi", "time_begin": 9, "time_end": 5}],  # backwards
        [{"text": "Hi", "time_begin": -1, "time_end": 5}],
        [{"text": 7, "time_begin": 0, "time_end": 5}],
    ],
)
def test_a_file_of_another_shape_is_refused(body: object) -> None:
    with pytest.raises(ValueError):
        parse_subtitles(json.dumps(body).encode())


def test_not_json_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_subtitles(b"<html>gateway</html>")


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/s.json",
        "https://8.8.8.8/s.json",
        "http://api.minimax.io/files/s.json",  # MiniMax's own host
    ],
)
def test_https_anywhere_public_or_minimax_s_own_host_may_be_fetched(url: str) -> None:
    check_url(url, "api.minimax.io")


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/s.json",  # plain http elsewhere
        "file:///etc/passwd",
        "https://127.0.0.1/s.json",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/s.json",
        "https://[::1]/s.json",
        # Loopback spelled as the resolver also reads it (inet_aton): still an address.
        "https://127.1/s.json",
        "https://2130706433/s.json",
        "https://0x7f.0.0.1/s.json",
        "https://0251.0376.0251.0376/latest/meta-data",  # 169.254.169.254 in octal
        "https://user:pw@cdn.example.com/s.json",
        "gopher://api.minimax.io/x",
        "https:///nohost",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url, "api.minimax.io")


def test_each_part_starts_where_the_real_audio_before_it_ends() -> None:
    parts = [
        [Timing("One.", 0, 900), Timing("Two.", 950, 1800)],
        [Timing("Three.", 10, 700)],
        [Timing("Four.", 0, 500.4)],
    ]
    assert offset_timings(parts, [1850, 733, 600]) == [
        {"text": "One.", "start_seconds": 0.0, "end_seconds": 0.9},
        {"text": "Two.", "start_seconds": 0.95, "end_seconds": 1.8},
        {"text": "Three.", "start_seconds": 1.86, "end_seconds": 2.55},
        {"text": "Four.", "start_seconds": 2.583, "end_seconds": 3.083},
    ]


def test_a_time_past_its_part_s_end_is_that_end() -> None:
    parts = [[Timing("One.", 0, 1001)], [Timing("Two.", 0, 500)]]
    assert offset_timings(parts, [1000, 500]) == [
        {"text": "One.", "start_seconds": 0.0, "end_seconds": 1.0},
        {"text": "Two.", "start_seconds": 1.0, "end_seconds": 1.5},
    ]


def test_one_part_is_its_own_clock() -> None:
    assert offset_timings([[Timing("Hi", 5, 10)]], [20]) == [
        {"text": "Hi", "start_seconds": 0.005, "end_seconds": 0.01}
    ]


def fetcher(handler: httpx.MockTransport) -> SubtitleFetcher:
    return SubtitleFetcher(
        httpx.AsyncClient(transport=handler), minimax_base_url="https://api.minimax.io"
    )


async def fetch(respond: object, url: str = "https://cdn.example.com/s.json") -> list[Timing]:
    client = fetcher(httpx.MockTransport(respond))  # type: ignore[arg-type]
    try:
        return await client.fetch(url, request_id="job-1")
    finally:
        await client.aclose()


async def test_a_good_file_is_fetched() -> None:
    timings = await fetch(lambda request: httpx.Response(200, json=FILE))
    assert timings == [Timing("Hello", 0, 420.5)]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(302, headers={"location": "http://169.254.169.254/"}),  # not followed
        httpx.Response(404),
        httpx.Response(200, content=b"[" + b" " * MAX_BYTES + b"]"),  # over the cap
        httpx.Response(200, json={"subtitles": FILE}),
    ],
)
async def test_a_bad_answer_is_minimax_s_failure(response: httpx.Response) -> None:
    with pytest.raises(UpstreamUnavailable):
        await fetch(lambda request: response)


async def test_a_refused_url_is_never_requested() -> None:
    asked: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=FILE)

    with pytest.raises(UpstreamUnavailable):
        await fetch(record, "http://10.0.0.5/s.json")
    assert asked == []


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/s.json",  # urlsplit itself refuses it
        "https://cdn.example.com/s\x00.json",  # httpx refuses it (InvalidURL)
        "https://cdn.exa\x7fmple.com/s.json",
    ],
)
async def test_a_url_no_client_can_read_is_minimax_s_failure(url: str) -> None:
    """Never ``internal``: in a stream that would also leave its delivered audio free."""
    with pytest.raises(UpstreamUnavailable):
        await fetch(lambda request: httpx.Response(200, json=FILE), url)
