"""Benchmarks (not part of the service): `python -m bench.transport` and friends."""
