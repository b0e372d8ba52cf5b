"""Benchmarks: `python -m bench` (run by `make bench`)."""
