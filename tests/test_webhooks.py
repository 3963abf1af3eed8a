"""Webhooks are RunPod's own (``"webhook"`` beside ``input`` in /run): RunPod POSTs the
job's /status body to the caller's URL when the job ends. Nothing of ours is involved,
but our result must reach RunPod whole for there to be anything to push.

The SDK (runpod 1.12.0) hands the result over in ``rp_job.run_job`` (``error`` popped
from the dict, the rest as ``output``) and ``rp_http._handle_result``
(``json.dumps(..., ensure_ascii=False)``, POSTed to RunPod): a result that does not
serialise is logged there and dropped, so the job never ends and no webhook fires; a
/run result above about 10 MB is lost the same way (/work/shared/docs/runpod-notes.md).
Here the SDK's own function runs our handler, and its result is serialised as the SDK
does, for a success and for one of our errors.
"""

from __future__ import annotations

import json

from runpod.serverless.modules.rp_job import run_job

from odeatts.worker import Worker
from tests.conftest import UserFactory, backend_independent

# RunPod keeps a /run result of about 10 MB at most (runpod-notes.md): what a webhook gets.
RUN_RESULT_LIMIT = 10 * 1000 * 1000


def as_posted(result: dict[str, object]) -> str:
    """What rp_http._handle_result sends RunPod (it raises TypeError and drops the job
    for anything json.dumps cannot take)."""
    return json.dumps(result, ensure_ascii=False)


@backend_independent
async def test_a_success_reaches_runpod_whole(worker: Worker, make_user: UserFactory) -> None:
    _, key = await make_user()
    job = {
        "id": "hook-ok",
        "input": {"api_key": key, "text": "Ring me back.", "voice": "british-male"},
    }
    result = await run_job(worker.handle, job)
    assert set(result) == {"output"}, result
    posted = as_posted(result)
    assert len(posted.encode()) < RUN_RESULT_LIMIT
    output = json.loads(posted)["output"]
    assert output["request_id"] == "hook-ok" and output["audio_base64"]


@backend_independent
async def test_our_error_reaches_runpod_as_a_string(worker: Worker, make_user: UserFactory) -> None:
    _, key = await make_user()
    job = {"id": "hook-err", "input": {"api_key": key, "text": "Ring me back.", "voice": "nobody"}}
    result = await run_job(worker.handle, job)
    assert set(result) == {"error"}, result  # RunPod marks the job FAILED with it
    assert isinstance(result["error"], str)
    error = json.loads(json.loads(as_posted(result))["error"])
    assert error["code"] == "voice_not_found" and error["status"] == 404
