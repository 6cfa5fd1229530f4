"""Benchmarks: scripts that print tables (run as ``python -m bench.<name>``); never timed tests."""

__all__: list[str] = []  # each benchmark is its own module (python -m bench.<name>)
