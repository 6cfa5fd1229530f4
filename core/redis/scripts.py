"""Lua scripts sent by their SHA1 (``EVALSHA``), the source only when the server lacks it.

``EVAL`` ships a script's whole source with every call, and the server hashes it to find its
compiled copy: for the fence's script (about 2 KB, one call per read and per acknowledgement of
every consuming service) that is work per batch on both sides for nothing. ``EVALSHA`` sends
the 40-character hash. A server that does not hold the script (restarted, a replica promoted
by a fail-over, ``SCRIPT FLUSH``) answers ``NOSCRIPT`` without running anything; the call is
then made once with ``EVAL``, which also caches the script there for the next ones. Running
nothing on ``NOSCRIPT`` is what makes the fallback safe for any script, idempotent or not.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

from core.redis.modes import AsyncClient

__all__ = ["LuaScript", "is_noscript"]


class LuaScript:
    """One Lua script: run by hash, with its source sent only to a server that lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, redis: AsyncClient, numkeys: int, *keys_and_args: Any) -> Any:
        """The script's reply for ``keys_and_args`` (``numkeys`` keys first), as ``EVAL`` gives it."""
        try:
            return await redis.evalsha(self.sha, numkeys, *keys_and_args)
        except NoScriptError:
            return await redis.eval(self.source, numkeys, *keys_and_args)

    def command(self, numkeys: int, *keys_and_args: Any) -> list[Any]:
        """The ``EVALSHA`` command as a list of arguments (for a hand-packed pipeline)."""
        return ["EVALSHA", self.sha, str(numkeys), *keys_and_args]

    def source_command(self, numkeys: int, *keys_and_args: Any) -> list[Any]:
        """The same call as ``EVAL`` with the source: what to send after :func:`is_noscript`."""
        return ["EVAL", self.source, str(numkeys), *keys_and_args]


def is_noscript(reply: Any) -> bool:
    """Whether a reply is the server's ``NOSCRIPT`` refusal (nothing was run)."""
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT")
    )
