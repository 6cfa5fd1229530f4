"""Lua scripts sent by their SHA1 (``EVALSHA``), the source only when the server lacks it.

``EVAL`` ships a script's whole source with every call, and the server hashes it to find its
compiled copy: for the fence's script (about 2 KB, one call per read and per acknowledgement of
every consuming service) that is work per batch on both sides for nothing. ``EVALSHA`` sends
the 40-character hash. A server that does not hold the script (restarted, a replica promoted
by a fail-over, ``SCRIPT FLUSH``) answers ``NOSCRIPT`` without running anything; the call is
then made once with ``EVAL``, which also caches the script there for the next ones. Running
nothing on ``NOSCRIPT`` is what makes the fallback safe for any script, idempotent or not.

A call goes out on the transport's own wire path (:func:`core.redis.wire.send_pipelined`: one
packed command, its reply read straight from the parser), not through redis-py's
``execute_command``, whose per-command machinery (connection checks, timers, event hooks)
cost more CPU than the fence's whole script; on a cluster it goes to the node of the first key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from core.redis.modes import AsyncClient
from core.redis.wire import pack_command, send_pipelined

__all__ = ["LuaScript", "is_noscript"]


class LuaScript:
    """One Lua script: run by hash, with its source sent only to a server that lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, redis: AsyncClient, numkeys: int, *keys_and_args: Any) -> Any:
        """The script's reply for ``keys_and_args`` (``numkeys`` keys first), as ``EVAL`` gives
        it; an error reply is raised (a ``ResponseError``), connection trouble raises redis-py's
        ``ConnectionError``/``TimeoutError`` (the caller's retry decides)."""
        reply = (await self.send(redis, numkeys, *keys_and_args))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def send(
        self, redis: AsyncClient, numkeys: int, *keys_and_args: Any, then: Sequence[Sequence[str]] = ()
    ) -> list[Any]:
        """The replies of the script's call and of the commands ``then`` sent right after it in
        the same round trip (e.g. a ``WAIT``), error replies in place; the whole pipeline is sent
        again with the source when the server lacks the script (nothing of it ran: a ``then``
        command did, and runs once more)."""
        return await self.send_many(redis, [(numkeys, keys_and_args)], then=then)

    async def send_many(
        self,
        redis: AsyncClient,
        calls: Sequence[tuple[int, Sequence[Any]]],
        *,
        then: Sequence[Sequence[str]] = (),
    ) -> list[Any]:
        """The replies of several calls of the script (``(numkeys, keys_and_args)`` each) and of
        the commands ``then``, all sent in one round trip, error replies in place; calls the
        server refused with ``NOSCRIPT`` (nothing of them ran) are sent again with the source in
        one more round trip, followed by ``then`` again (which ran once already: it runs twice,
        e.g. a ``WAIT`` that now also covers the calls sent again). On a cluster the pipeline
        goes to the node of the first call's first key: every call's keys must live there."""
        if not calls:
            return []
        first_numkeys, first_args = calls[0]
        key = str(first_args[0]) if first_numkeys else None
        after = [pack_command(command) for command in then]
        replies: list[Any] = []
        chunk = [pack_command(self.command(n, *args)) for n, args in calls] + after
        await send_pipelined(redis, [(chunk, len(chunk))], replies.extend, key=key)
        missing = [i for i in range(len(calls)) if is_noscript(replies[i])]
        if missing:
            again: list[Any] = []
            chunk = [pack_command(self.source_command(calls[i][0], *calls[i][1])) for i in missing] + after
            await send_pipelined(redis, [(chunk, len(chunk))], again.extend, key=key)
            for position, i in enumerate(missing):
                replies[i] = again[position]
            replies[len(calls) :] = again[len(missing) :]
        return replies

    def command(self, numkeys: int, *keys_and_args: Any) -> list[Any]:
        """The ``EVALSHA`` command as a list of arguments (for a hand-packed pipeline)."""
        return ["EVALSHA", self.sha, str(numkeys), *map(_arg, keys_and_args)]

    def source_command(self, numkeys: int, *keys_and_args: Any) -> list[Any]:
        """The same call as ``EVAL`` with the source: what to send after :func:`is_noscript`."""
        return ["EVAL", self.source, str(numkeys), *map(_arg, keys_and_args)]


def is_noscript(reply: Any) -> bool:
    """Whether a reply is the server's ``NOSCRIPT`` refusal (nothing was run)."""
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT")
    )


def _arg(value: Any) -> str | bytes:
    return value if isinstance(value, str | bytes) else str(value)
