"""RunPod entry point. Thin on purpose: settings, logging, then the SDK's loop.

The contract (inputs, outputs, error codes) lives in odeatts/schemas.py and the
README; the work lives in odeatts/pipeline.py.
"""

from __future__ import annotations

import sys
import types


def _processor() -> dict[str, str]:
    """The CPU's name from /proc/cpuinfo, for the SDK's debugger output.

    ``import runpod`` calls ``cpuinfo.get_cpu_info()`` at import time: py-cpuinfo runs
    ``file`` on the interpreter as it loads, then starts a new Python interpreter (that
    starts another to run CPUID), about 1.2 s of every cold start, for one string the
    SDK shows only with its debugger on. The SDK gets this module in its place.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and value.strip():
                    return {"brand_raw": value.strip()}
    except OSError:
        pass
    return {}  # the SDK then says "Unable to get processor info."


_cpuinfo = types.ModuleType("cpuinfo", "Stands in for py-cpuinfo: see handler._processor.")
_cpuinfo.get_cpu_info = _processor  # type: ignore[attr-defined]
sys.modules.setdefault("cpuinfo", _cpuinfo)  # before the SDK imports it

# Optional parts of libraries we use that a worker never calls, each imported by default
# when installed. None in sys.modules makes their import fail at once, as if absent, and
# each library then does without, as it is written to:
# - httpx's command-line client (httpx/__init__.py imports it when click, rich and pygments
#   are there; the operators' CLI installs them): about 0.1 s.
# - the OpenTelemetry SDK, which redis imports for metrics we never turn on
#   (redis/observability/providers.py, "OTel SDK may not be installed"): about 0.1 s.
for _absent in ("httpx._main", "opentelemetry.sdk.metrics"):
    sys.modules.setdefault(_absent, None)  # type: ignore[arg-type]

import runpod  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from odeatts.config import Settings  # noqa: E402
from odeatts.logs import configure_logging  # noqa: E402
from odeatts.worker import Worker  # noqa: E402


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        # Refuse to start with a readable reason, not a traceback.
        sys.exit("odeatts: invalid settings: " + "; ".join(e["msg"] for e in exc.errors()))
    configure_logging(settings)
    worker = Worker(settings)
    worker.preload()  # the job path's imports, before the SDK asks for a job
    runpod.serverless.start(
        {
            "handler": worker.handler,  # a plain coroutine, or a generator for streaming
            "concurrency_modifier": worker.concurrency,
            "return_aggregate_stream": True,  # /run and /runsync of a stream get every item
        }
    )


if __name__ == "__main__":
    main()
