"""RunPod entry point. Thin on purpose: settings, logging, then the SDK's loop.

The contract (inputs, outputs, error codes) lives in odeatts/schemas.py and the
README; the work lives in odeatts/pipeline.py.
"""

from __future__ import annotations

import sys

import runpod
from pydantic import ValidationError

from odeatts.config import Settings
from odeatts.logs import configure_logging
from odeatts.worker import Worker


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        # Refuse to start with a readable reason, not a traceback.
        sys.exit("odeatts: invalid settings: " + "; ".join(e["msg"] for e in exc.errors()))
    configure_logging(settings)
    worker = Worker(settings)
    runpod.serverless.start(
        {
            "handler": worker.handler,  # a plain coroutine, or a generator for streaming
            "concurrency_modifier": worker.concurrency,
            "return_aggregate_stream": True,  # /run and /runsync of a stream get every item
        }
    )


if __name__ == "__main__":
    main()
