"""handler.py, the RunPod entry point, as the SDK's production loop imports it: in a
fresh interpreter (one, for both tests: an interpreter costs a second or two)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.xdist_group("handler")  # one xdist worker: one interpreter

# Any new process during the import fails it: py-cpuinfo, as runpod calls it at import
# time, starts two interpreters (about 1.2 s of every cold start). Then what a RunPod
# worker has imported before its first job, and what it never needs.
_IMPORT = """
import json, subprocess, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"a process was started at import: {args[:1]}")
popen, subprocess.Popen = subprocess.Popen, refuse
import handler
subprocess.Popen = popen
at_import = sorted(m for m in sys.modules if sys.modules[m] is not None)
from odeatts.worker import import_job_path
import_job_path()
preloaded = sorted(m for m in sys.modules if sys.modules[m] is not None)
from runpod.serverless.utils import rp_debugger
print(json.dumps({"cpu": rp_debugger.PROCESSOR, "at_import": at_import, "preloaded": preloaded}))
"""
# Object storage only when a bucket is configured; the operators' CLI and migrations never.
_NEVER = ("boto3", "botocore", "alembic", "typer", "odeatts.cli", "odeatts.migrate")
# The job path's clients: imported by Worker.preload while the SDK starts, not at import.
_PRELOADED = ("sqlalchemy", "redis", "httpx", "odeatts.pipeline")
# Optional parts of those clients that handler.py keeps out (see there).
_KEPT_OUT = ("httpx._main", "click", "rich", "pygments", "opentelemetry.sdk.metrics")


@functools.cache
def _imported() -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def _loaded(modules: list[str], root: str) -> bool:
    return any(m == root or m.startswith(root + ".") for m in modules)


def test_importing_the_handler_starts_no_process_and_still_names_the_cpu() -> None:
    names = [
        line.partition(":")[2].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    assert _imported()["cpu"] == (names[0] if names else "Unable to get processor info.")


def test_importing_the_handler_leaves_out_what_no_job_needs() -> None:
    at_import, preloaded = _imported()["at_import"], _imported()["preloaded"]
    for root in (*_NEVER, *_PRELOADED, *_KEPT_OUT):
        assert not _loaded(at_import, root), f"`import handler` imports {root}"
    for root in _PRELOADED:
        assert _loaded(preloaded, root), f"the job path no longer needs {root}?"
    for root in (*_NEVER, *_KEPT_OUT):
        assert not _loaded(preloaded, root), f"the job path imports {root}"
