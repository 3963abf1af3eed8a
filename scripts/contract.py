"""MiniMax's documented exchanges (tests/contract/fixtures) and one way to compare shapes.

Why: the client, the emulator and MiniMax itself are each checked against the same
fixtures, taken from MiniMax's documentation: the client by replaying them
(tests/contract/test_client_contract.py), the emulator by sending their requests
(tests/contract/test_emulator_contract.py), the real service by
scripts/minimax_smoke.py. What is compared is the shape of a reply: its keys and
the JSON type of every value, at every level; values may differ. A list is
compared by its first element (when both lists have one).

JSON types are JSON's own: 1 and 1.0 are both a number. Where MiniMax documents an
integer, the tests check that separately (``integer_problems``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "FIXTURES",
    "event_kind",
    "integer_problems",
    "json_type",
    "load",
    "parse_sse",
    "shape_diff",
    "sse_text",
]

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "contract" / "fixtures"


def load(name: str) -> dict[str, Any]:
    """The fixture ``name`` (file name without ``.json``)."""
    fixture = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    if not isinstance(fixture, dict):
        raise ValueError(f"fixture {name} is not a JSON object")
    return fixture


def sse_text(fixture: dict[str, Any]) -> str:
    """The raw event-stream text a streaming fixture names in ``reply_sse``."""
    return (FIXTURES / str(fixture["reply_sse"])).read_text(encoding="utf-8")


def parse_sse(text: str) -> list[Any]:
    """The JSON value of every ``data:`` event of an event stream, in order.

    Lenient like MiniMax's own CLI: an event still open at the end (no blank line
    after it) counts, a ``[DONE]`` line ends the stream, other fields are ignored.
    """
    events: list[Any] = []
    data: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line.strip() and data:
            payload, data = "\n".join(data), []
            if payload.strip() == "[DONE]":
                break
            events.append(json.loads(payload))
    return events


def event_kind(event: Any) -> str:
    """ "final" for the event that ends a stream (data.status 2), else "chunk"."""
    data = event.get("data") if isinstance(event, dict) else None
    return "final" if isinstance(data, dict) and data.get("status") == 2 else "chunk"


def json_type(value: Any) -> str:
    """JSON's name for the type of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _where(path: str) -> str:
    return path or "the body"


def shape_diff(expected: Any, actual: Any, *, extra_keys: bool = True, path: str = "") -> list[str]:
    """What differs between two decoded JSON values, shape only, one line per difference.

    ``extra_keys=False`` accepts keys ``actual`` has beyond ``expected`` (for replies
    whose other keys the docs do not name).
    """
    want, got = json_type(expected), json_type(actual)
    if want != got:
        return [f"{_where(path)}: {want} expected, {got} found"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _object_diff(expected, actual, extra_keys=extra_keys, path=path)
    if isinstance(expected, list) and isinstance(actual, list) and expected and actual:
        return shape_diff(expected[0], actual[0], extra_keys=extra_keys, path=f"{path}[0]")
    return []


def _object_diff(
    expected: dict[str, Any], actual: dict[str, Any], *, extra_keys: bool, path: str
) -> list[str]:
    problems: list[str] = []
    for key, value in expected.items():
        where = f"{path}.{key}" if path else key
        if key not in actual:
            problems.append(f"missing key {where} ({json_type(value)})")
        else:
            problems += shape_diff(value, actual[key], extra_keys=extra_keys, path=where)
    if extra_keys:
        for key in actual.keys() - expected.keys():
            where = f"{path}.{key}" if path else key
            problems.append(f"extra key {where} ({json_type(actual[key])})")
    return problems


def _at(value: Any, path: str) -> tuple[bool, Any]:
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def integer_problems(value: Any, paths: Iterable[str]) -> list[str]:
    """Which of the dotted ``paths`` that are present hold something other than an integer
    (MiniMax documents these as integers; our client refuses 1.0 for 1)."""
    problems = []
    for path in paths:
        present, found = _at(value, path)
        if present and (isinstance(found, bool) or not isinstance(found, int)):
            problems.append(f"{path}: integer expected, {json.dumps(found)[:40]} found")
    return problems
