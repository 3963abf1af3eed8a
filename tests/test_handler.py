"""handler.py, the RunPod entry point, as the SDK's production loop imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

# Any new process during the import fails it: py-cpuinfo, as runpod calls it at import
# time, starts two interpreters (about 1.2 s of every cold start).
_NO_CHILDREN = """
import subprocess
def refuse(*args, **kwargs):
    raise AssertionError(f"a process was started at import: {args[:1]}")
subprocess.Popen = refuse
import handler
from runpod.serverless.utils import rp_debugger
print(rp_debugger.PROCESSOR)
"""


def test_importing_the_handler_starts_no_process_and_still_names_the_cpu() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_CHILDREN], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [
        line.partition(":")[2].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    assert proc.stdout.strip() == (names[0] if names else "Unable to get processor info.")
