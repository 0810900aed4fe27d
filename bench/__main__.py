"""Run every benchmark module (or the ones named on the command line)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)]))
    chosen = [
        n
        for n in names
        if n.startswith("bench_") and (not argv or n.removeprefix("bench_") in argv or n in argv)
    ]
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
