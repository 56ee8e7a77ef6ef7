"""Benchmarks; run them with ``./dev bench`` (see run.py)."""
