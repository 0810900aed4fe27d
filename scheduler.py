"""Runs Retain's scheduler in the foreground: ``python scheduler.py`` == ``retain schedule run``.

Thin on purpose: campaigns/scheduling/service.py builds the APScheduler 3 scheduler from the
campaign definitions and runs it; options (``--db``, ``--config``) are the ``retain`` command's.
"""

from __future__ import annotations

import sys

from campaigns.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main([*args, "schedule", "run"]))
