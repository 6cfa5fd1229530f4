"""The ``cdb`` command line: one entry point for operators, engineers and release managers."""

from cdb.cli.main import app

__all__ = ["app"]
