"""Benchmarks: each ``bench_*.py`` module has ``main()`` and prints its figures beside a baseline
measured in the same run. ``python -m bench [NAME ...]`` runs them all (or the named ones)."""
