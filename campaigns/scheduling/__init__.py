"""Scheduled sends: APScheduler 3 jobs built from the campaigns' front matter (docs/scheduling.md).

- ``plan``: definitions -> jobs (cron / interval / once, recipient-local zones, nightly train)
- ``policy``: the missed-run policy (send within ``max_lateness`` once, skip beyond it with a reason)
- ``zones``: a customer's effective timezone
- ``jobs``: the functions the job store refers to by text, and their context
- ``sync``: reconcile the job store with the templates and report the diff
- ``lock``: one scheduler per database
- ``service``: build the scheduler and run it in the foreground
"""

from __future__ import annotations
