"""Command-line tools an integration test needs (promtool, prometheus, chromium): found, or the
test is skipped; in CI (``CI=true``) it fails instead, because a test that did not run proved nothing."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["missing_tool", "required_tool"]


def missing_tool(message: str) -> NoReturn:
    """Skip the test for a missing tool, saying ``message``; fail it in CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def required_tool(name: str, debian_package: str) -> str:
    """The path of the command ``name``; missing, see :func:`missing_tool`."""
    found = shutil.which(name)
    if found is None:
        missing_tool(
            f"{name} is missing (Debian package {debian_package}; scripts/ensure-tools.sh installs it)"
        )
    return found
