"""Hangar's benchmarks: each figure beside a baseline measured in the same run.

Run with `uv run python -m bench` (see bench/README.md). Benchmarks are not tests: they
never fail, they report.
"""
