"""Import benchmark: the full Online Retail file into an empty SQLite database.

Baseline measured in the same run: a plain ``pandas.read_csv`` of the same file (parsing only,
nothing validated or written). Each side runs in its own process so peak RSS is its own.
Goal (issue #2): whole import <= 30 s on the 2-core machine, peak RSS <= 1 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "online_retail.csv.gz"
LINES = 541_909

_IMPORT = """
import json, resource, sys, time
from campaigns.store import Store
from campaigns.ingest import import_online_retail
store = Store.open(sys.argv[1])
t = time.perf_counter()
summary = import_online_retail(store, sys.argv[2])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": summary.order_lines_added}))
"""

_PANDAS = """
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1], dtype=str)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": len(df)}))
"""


def _run(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        retain = _run(_IMPORT, f"sqlite:///{Path(tmp) / 'bench.db'}", str(DATA))
    pandas = _run(_PANDAS, str(DATA))
    print(f"file: {DATA.name}, {LINES:,} lines")
    print(f"{'':24}{'seconds':>10}{'lines/s':>12}{'peak RSS MB':>14}")
    for name, r in (("retain import (SQLite)", retain), ("pandas.read_csv", pandas)):
        print(f"{name:24}{r['seconds']:>10.2f}{LINES / r['seconds']:>12,.0f}{r['rss_mb']:>14.0f}")
    print(
        f"ratio import/read_csv: {retain['seconds'] / pandas['seconds']:.1f}x the time "
        f"(validates, cleans and writes {int(retain['lines']):,} purchase lines in one transaction)"
    )
    print(
        f"goal: <= 30 s and <= 1024 MB -> {'met' if retain['seconds'] <= 30 and retain['rss_mb'] <= 1024 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
