#!/usr/bin/env python3
"""The scheduled quota reset, for cron or any scheduler:

    5 * * * * cd /app && python scripts/reset_quotas.py >> /var/log/odeatts-reset.log 2>&1

Starts the next billing cycle of every user whose cycle has ended: archives the
finished cycle into ``billing_cycles`` and sets used and credit to zero (see
``odeatts/billing.py``). It is idempotent, so running it hourly is fine; it is the
same function as ``admin.py quota reset-due`` and accepts its ``--json``.

Reads the worker's environment (DATABASE_URL, ...). Exits 0 on success, 2 on a
mistake (bad settings), 3 if the database cannot be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odeatts.cli import app

if __name__ == "__main__":
    app(["quota", "reset-due", *sys.argv[1:]], prog_name="reset_quotas.py")
