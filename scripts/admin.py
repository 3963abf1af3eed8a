#!/usr/bin/env python3
"""OdeaTTS operators' command line. These command lines are a public interface.

On a checkout, run it through ``scripts/admin`` (it makes ./.venv first); in the worker
image, where the image's Python has everything, run this file:

    scripts/admin db upgrade
    scripts/admin users create --name NAME --email EMAIL --plan free [--json]
    scripts/admin voices add --name NAME --minimax-id ID --language en-NG --gender female
    python scripts/admin.py quota reset-due          # in the image

Every command reads the same environment as the worker (DATABASE_URL, ...) and takes
``--json``. A mistake prints ``error: ...`` on stderr and exits 2; a database that cannot
be reached (or has no schema yet) exits 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odeatts.cli import app

if __name__ == "__main__":
    app()
