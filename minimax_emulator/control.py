"""The emulator's own endpoints under /_emulator/ (not part of MiniMax).

Why: a test or demo running in another process (or a shell script) must be
able to inject faults, reset state, read statistics, tune latency and fetch
url-mode audio over HTTP, exactly as the Python-side Emulator helpers do.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from minimax_emulator.faults import parse_rule
from minimax_emulator.state import STATE_KEY

__all__ = ["routes"]


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"not JSON: {exc}"}), content_type="application/json"
        ) from exc


async def add_faults(request: web.Request) -> web.Response:
    """POST /_emulator/faults: one rule or a list of rules, appended in order."""
    body = await _body(request)
    try:
        rules = [parse_rule(raw) for raw in (body if isinstance(body, list) else [body])]
    except ValueError as exc:
        return _bad(str(exc))
    book = request.app[STATE_KEY].faults
    for rule in rules:
        book.add(rule)
    return web.json_response({"added": len(rules), "pending": book.pending()})


async def reset(request: web.Request) -> web.Response:
    """POST /_emulator/reset: clear faults, stats, clones, uploads."""
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


async def stats(request: web.Request) -> web.Response:
    """GET /_emulator/stats."""
    return web.json_response(request.app[STATE_KEY].stats.snapshot())


async def configure(request: web.Request) -> web.Response:
    """POST /_emulator/config: latency_seconds, per_char_latency_seconds, chunk_delay_seconds."""
    body = await _body(request)
    if not isinstance(body, dict):
        return _bad("config must be a JSON object")
    try:
        return web.json_response(request.app[STATE_KEY].configure(**body))
    except ValueError as exc:
        return _bad(str(exc))


async def hosted_file(request: web.Request) -> web.Response:
    """GET /_emulator/files/<token>: audio produced with output_format url."""
    found = request.app[STATE_KEY].hosted.get(request.match_info["token"])
    if found is None:
        raise web.HTTPNotFound()
    data, content_type = found
    return web.Response(body=data, content_type=content_type)


def routes() -> list[web.RouteDef]:
    """The /_emulator routes."""
    return [
        web.post("/_emulator/faults", add_faults),
        web.post("/_emulator/reset", reset),
        web.get("/_emulator/stats", stats),
        web.post("/_emulator/config", configure),
        web.get("/_emulator/files/{token}", hosted_file),
    ]
