"""Connection URLs: checked before use, and never shown with their password.

:func:`redact_url` hides the password of any URL, also a malformed one (a mistyped
scheme, no host, a bad port, an unclosed ``[``, no scheme at all) and a libpq keyword
string (``password=...``): a setting is printed in error messages exactly when it is
wrong, so redaction must not depend on the URL being right. :func:`url_problem` says
what is wrong with a ``REDIS_URL`` / ``DATABASE_URL`` without repeating it, so the
settings refuse a malformed URL at start instead of handing it to a driver whose error
text would quote it whole (psycopg: ``missing "=" after "<the URL>"``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DATABASE_SCHEMES", "REDIS_SCHEMES", "redact_url", "url_problem"]

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""Schemes redis-py connects with (``REDIS_URL``)."""
DATABASE_SCHEMES = ("postgresql", "postgres")
"""Schemes psycopg connects with (``DATABASE_URL``)."""

_MASK = "***"
# libpq keyword form: password=secret or password='sec ret'
_CONNINFO_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def _loose(url: str) -> str:
    """Redaction without parsing: everything between the first ``:`` of the user info and
    the last ``@`` is the password (over-redacting an odd URL is safe, under-redacting not)."""
    url = _CONNINFO_PASSWORD.sub(rf"\g<1>{_MASK}", url)
    at = url.rfind("@")
    scheme_end = url.find("://")
    if at < 0:
        return _port_or_password(url, scheme_end)
    start = scheme_end + 3 if 0 <= scheme_end < at else 0
    userinfo = url[start:at]
    if ":" not in userinfo:
        return url  # a user name only
    user = userinfo.split(":", 1)[0]
    return f"{url[:start]}{user}:{_MASK}@{url[at + 1 :]}"


def _port_or_password(url: str, scheme_end: int) -> str:
    # No "@": "scheme://user:secret/db" (the "@" forgotten) parses as host "user", port
    # "secret". A port that is not a number may be a password: masked.
    if scheme_end < 0:
        return url
    start = scheme_end + 3
    end = next((i for i in range(start, len(url)) if url[i] in "/?#"), len(url))
    netloc = url[start:end]
    after_ipv6 = netloc.find("]") + 1 if netloc.startswith("[") else 0  # "[::1]:6379"
    _, sep, port = netloc[after_ipv6:].rpartition(":")
    if not sep or port.isdigit():
        return url
    return f"{url[: end - len(port)]}{_MASK}{url[end:]}"


def redact_url(url: str | None) -> str:
    """``url`` with any password replaced by ``***``, safe for logs, status and errors.

    Never raises; a URL that does not parse is redacted by position (see :func:`_loose`).
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return _loose(url)
    if password is None or not parts.scheme or "://" not in url:
        return _loose(url)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    netloc = f"{user}:{_MASK}@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_problem(url: str, schemes: Collection[str]) -> str | None:
    """What makes ``url`` unusable as a URL of one of ``schemes``, or ``None`` if nothing.

    The text never contains the URL (it may hold a password): only the part that is wrong
    when that part cannot be secret (the scheme, the port).
    """
    if "://" not in url:
        return f"not a URL; expected {' or '.join(f'{s}://' for s in schemes)}..."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # Python's message may quote the port, which may be a password (a forgotten "@").
        if "port" in str(exc).lower():
            return "the port is not a number in 1..65535"
        return "not parseable (the host part is malformed)"
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        return f"unknown scheme {scheme[:20]!r}; expected one of {', '.join(schemes)}"
    if scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket path"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None
