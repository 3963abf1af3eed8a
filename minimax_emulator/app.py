"""The aiohttp application: MiniMax routes, one middleware, control routes.

Why: every MiniMax endpoint shares the same front door, in this order:
count the request (stats), apply a matching fault rule, check the API key
(and GroupId, if one is configured), then run the handler and turn any
ApiError into MiniMax's HTTP-200 base_resp error body with a trace id.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from minimax_emulator import cloning, control
from minimax_emulator.faults import HANDLER_KINDS
from minimax_emulator.inject import apply_fault
from minimax_emulator.protocol import LOGIN_FAIL, ApiError, error_body, json_response, new_trace_id
from minimax_emulator.state import (
    EPOCH_KEY,
    FAULT_KEY,
    STATE_KEY,
    TRACE_KEY,
    EmulatorState,
    Settings,
)
from minimax_emulator.t2a import t2a_v2

__all__ = ["ENDPOINT_PATHS", "make_app"]

ENDPOINT_PATHS = {
    "/v1/t2a_v2": "t2a_v2",
    "/v1/files/upload": "files/upload",
    "/v1/voice_clone": "voice_clone",
    "/v1/get_voice": "get_voice",
    "/v1/delete_voice": "delete_voice",
}
MAX_BODY = 30 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authorised(request: web.Request, settings: Settings) -> bool:
    if request.headers.get("Authorization") != f"Bearer {settings.api_key}":
        return False
    group = request.query.get("GroupId")
    return settings.group_id is None or group is None or group == settings.group_id


async def _is_streaming(request: web.Request, endpoint: str) -> bool:
    """Peek at a t2a body's "stream" flag (the body stays readable)."""
    if endpoint != "t2a_v2":
        return False
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True


async def _serve(
    request: web.Request, handler: Handler, endpoint: str, state: EmulatorState
) -> web.StreamResponse:
    trace_id = request[TRACE_KEY] = new_trace_id()
    try:
        rule = state.faults.take(endpoint, await _is_streaming(request, endpoint))
        if rule is not None:
            if rule.kind in HANDLER_KINDS:
                request[FAULT_KEY] = rule  # carried out by the t2a handler
            faulty = await apply_fault(request, rule, endpoint, trace_id)
            if faulty is not None:
                return faulty
        if not _authorised(request, state.settings):
            raise ApiError(1004, LOGIN_FAIL)
        return await handler(request)
    except ApiError as exc:
        return json_response(error_body(endpoint, exc.code, exc.msg, trace_id), trace_id)


@web.middleware
async def minimax_front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stats, faults, auth and ApiError rendering for the MiniMax endpoints."""
    endpoint = ENDPOINT_PATHS.get(request.path)
    if endpoint is None or request.match_info.http_exception is not None:
        return await handler(request)
    state = request.app[STATE_KEY]
    epoch = request[EPOCH_KEY] = state.stats.arrived(endpoint)
    if endpoint != "t2a_v2":
        return await _serve(request, handler, endpoint, state)
    state.stats.enter(epoch)
    try:
        return await _serve(request, handler, endpoint, state)
    finally:
        state.stats.leave(epoch)


def make_app(state: EmulatorState) -> web.Application:
    """A ready-to-run aiohttp application serving state."""
    app = web.Application(middlewares=[minimax_front_door], client_max_size=MAX_BODY)
    app[STATE_KEY] = state
    app.router.add_post("/v1/t2a_v2", t2a_v2)
    app.router.add_post("/v1/files/upload", cloning.upload)
    app.router.add_post("/v1/voice_clone", cloning.voice_clone)
    app.router.add_post("/v1/get_voice", cloning.get_voice)
    app.router.add_post("/v1/delete_voice", cloning.delete_voice)
    app.add_routes(control.routes())
    return app
