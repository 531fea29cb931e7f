"""`make bench` (PERF-2): real sign-ins through gunicorn, then in-process statement counts.

Run with ``.venv/bin/python -m bench.run --help``; see bench/README.md for what it measures.
"""
