"""Where a ws source got to, kept in Redis so a recreated ws resumes instead of restarting.

One hash per key prefix (:meth:`core.topics.KeySpace.source_positions`); each field is
a source's identity (``replay:<sha256 of the file>``, ``synthetic:<seed and shape>``)
and its value the source's own checkpoint text (how many trades of it are confirmed
published, plus whatever it needs to go on from there). The checkpoint is written
right after the batch that carried those trades was confirmed by Redis
(:class:`~services.ws.outbox.Outbox`), so:

* a clean stop (SIGTERM) loses nothing and repeats nothing: the last batch is
  published, then its checkpoint written, before the process exits;
* a crash (SIGKILL) between a batch's publish and its checkpoint write repeats at most
  that one batch on restart (signal ignores a trade not newer than its symbol's last);
* a checkpoint the source cannot read (edited or corrupted by hand) stops ws at start with
  :class:`PositionError`, which names the key, the field and the value, and the remedies.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import CdbError
from core.logging import get_logger
from core.redis.modes import AsyncClient
from core.topics import KeySpace

__all__ = ["PositionError", "SourcePositions"]

_log = get_logger("services.ws.position")
_SHOWN = 80  # characters of a bad value in the message (a synthetic checkpoint can be long)


class PositionError(CdbError):
    """The saved position of a source cannot be read: ws does not start (one line saying which
    Redis ``key`` and ``field`` hold what ``value``, and how to go on); the value is left as it is."""

    def __init__(self, key: str, field: str, value: str, problem: str) -> None:
        self.key, self.field, self.value = key, field, value
        shown = value if len(value) <= _SHOWN else value[: _SHOWN - 3] + "..."
        super().__init__(
            f"ws cannot resume: Redis hash {key!r} field {field!r} holds {shown!r}, not a position "
            f"this source can read ({problem}); start ws with --from-start (or WS_FROM_START=true) "
            "to begin the source again at its first trade, or fix the field, or delete it "
            f"(redis-cli HDEL {key} {field}; the next start then begins at the first trade)"
        )


@dataclass(frozen=True)
class SourcePositions:
    """The checkpoint of one source (``identity``) under one key prefix."""

    redis: AsyncClient
    keys: KeySpace
    identity: str

    async def load(self) -> str | None:
        """The last checkpoint written for this source, or ``None`` (never ran, or reset)."""
        raw = await self.redis.hget(self.keys.source_positions(), self.identity)
        # Undecodable bytes stay visible (U+FFFD) and unreadable to the source: PositionError.
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw or "")
        return text or None

    async def save(self, checkpoint: str) -> bool:
        """Write ``checkpoint``; False (logged) when Redis refused or was unreachable: the
        next batch's checkpoint replaces it, and a restart before that repeats one batch."""
        try:
            await self.redis.hset(self.keys.source_positions(), self.identity, checkpoint)
        except Exception as exc:  # a position write must never stop the sender (RedisError, OSError, ...)
            _log.warning("ws.position_not_saved", source=self.identity, error=str(exc))
            return False
        return True

    async def reset(self) -> None:
        """Forget the position (``--from-start``): the source begins again at its first trade."""
        await self.redis.hset(self.keys.source_positions(), self.identity, "")
