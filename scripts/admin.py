#!/usr/bin/env python3
"""OdeaTTS operators' command line. These command lines are a public interface.

    python scripts/admin.py db upgrade
    python scripts/admin.py users create --name NAME --email EMAIL --plan free [--json]
    python scripts/admin.py voices add --name NAME --minimax-id ID --language en-NG --gender female

Every command reads the same environment as the worker (DATABASE_URL, ...). A mistake
prints ``error: ...`` on stderr and exits 2; a database that cannot be reached exits 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odeatts.cli import app

if __name__ == "__main__":
    app()
