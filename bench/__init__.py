"""A benchmark of the real bot process against the fake Discord and the API simulator on loopback.

Run it from the project's folder with `python -m bench` (or `python -m bench --quick`); see docs/benchmark.md.
"""
