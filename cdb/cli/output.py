"""Shared output helpers: rich tables for people, JSON for scripts, one exit on bad config.

Everything printed through rich is parsed as markup, so text that comes from data (an
error message, a dead letter's payload, a symbol, an instance name, a path) goes through
:func:`shown` (or ``rich.markup.escape``) first: unescaped, ``[red]`` vanishes into a
style and ``[/b]`` makes rich raise ``MarkupError``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from core.errors import CdbError
from core.settings import redact_url

__all__ = [
    "console",
    "err_console",
    "exit_with",
    "one_line",
    "print_json",
    "redact_urls",
    "shown",
    "table",
    "unexpected",
]

# Piped output (CI logs, `| less`) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>\[\]]+")
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def shown(value: Any) -> str:
    """``value`` as text that rich prints literally (markup characters escaped)."""
    return escape("" if value is None else str(value))


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (see ``redact_url``);
    a URL too broken to parse loses its whole ``user:password@`` part."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        try:
            return redact_url(url)
        except ValueError:
            return _USERINFO.sub("***@", url)

    return _URL.sub(one, text)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table with ``columns`` and ``rows`` (values rendered with ``str``).

    Cells are rich markup (a caller may colour them), so a caller escapes what comes from
    data (:func:`shown`); the title is printed as it is.
    """
    out = Table(title=Text(title), show_lines=False)  # a title is literal text (it may hold a prefix)
    for col in columns:
        out.add_column(col)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    return out


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def one_line(text: str) -> str:
    """``text`` on one line: a multi-line message (a server's, a driver's) joined with `` | ``."""
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


def exit_with(exc: BaseException, code: int = 2) -> NoReturn:
    """Print an error for a person on one line of stderr (markup escaped, URL passwords
    redacted) and exit with ``code``."""
    err_console.print(
        f"[bold red]error:[/] {shown(one_line(redact_urls(str(exc))))}",
        highlight=False,
        soft_wrap=True,  # one line however long: scripts and log collectors read it whole
    )
    raise SystemExit(code)


def unexpected(exc: BaseException) -> CdbError:
    """The one-line error for an exception no command expected (a bug, or a library's error
    that nothing mapped yet): its type and message; ``CDB_TRACEBACK=1`` shows the traceback."""
    return CdbError(f"{type(exc).__name__}: {exc} (unexpected; CDB_TRACEBACK=1 shows the traceback)")
