"""One replay of a topic's dead letters at a time (``cdb dlq replay``, ``cdb dlq catch-up``).

Two operators replaying one topic at once would both publish every letter (neither has
marked any yet when the other reads the marks): each message twice. So a replay or
catch-up that writes holds ``KeySpace.dlq_replay_lock(topic)`` from before it reads the
letters until it is done: taken with ``SET NX PX`` and a token naming who runs it and since
when, extended every third of its TTL by a thread while it runs (compare-and-set: only the
holder extends it), deleted at the end (compare-and-delete), as instance claims and
partition leases are. A replay that crashed leaves the lock until its TTL passes
(:data:`LOCK_TTL_MS`), never for good. A second replay is refused with
:class:`ReplayInProgressError` before it reads or writes anything.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from core.errors import CdbError
from core.logging import get_logger
from core.redis.leases import RELEASE_IF_OWNER, TAKE_OR_EXTEND
from core.redis.modes import SyncClient, reply_text
from core.topics import KeySpace, Topic
from core.utils.clock import now_ms

__all__ = ["LOCK_TTL_MS", "ReplayInProgressError", "ReplayLock", "ReplayLockLostError", "replay_lock"]

LOCK_TTL_MS = 30_000
"""How long a replay's lock outlives the process that held it (renewed every third of it while
the replay runs)."""

_log = get_logger("core.redis.dlq_lock")


class ReplayInProgressError(CdbError):
    """Another replay or catch-up of ``topic`` holds its lock (``holder``: who, since when);
    this one wrote nothing. (:class:`ReplayLockLostError`, a kind of it: this one lost the lock
    partway.)"""

    def __init__(self, topic: Topic, holder: str, expires_ms: int) -> None:
        self.topic = topic
        self.holder = holder
        super().__init__(
            f"a replay of {topic.value} dead letters is already in progress ({holder}); nothing written: "
            f"run again when it is done (if it died, its lock expires in {max(expires_ms, 0) // 1000 + 1} s)"
        )


class ReplayLockLostError(ReplayInProgressError):
    """This replay lost its lock partway (paused past its TTL while another replay or catch-up
    of ``topic`` took it): it had published ``published`` of the ``total`` letters it meant to,
    and writes nothing more; the rest stay parked. Raised by :meth:`ReplayLock.check`."""

    def __init__(
        self, topic: Topic, holder: str, *, published: int = 0, total: int = 0, done: str = "publishing #"
    ) -> None:
        self.topic = topic
        self.holder = holder
        self.published = published
        self.total = total
        progress = done.replace("#", f"{published} of {total}")
        CdbError.__init__(
            self,
            f"this replay of {topic.value} dead letters lost its lock to another replay ({holder}) "
            f"after {progress}; nothing more written; the rest stays parked: "
            "run again once that one is done (letters already replayed are not published twice)",
        )


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = "?"
    since = datetime.fromtimestamp(now_ms() / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{user}@{socket.gethostname()} pid {os.getpid()}, since {since} UTC, #{uuid.uuid4().hex[:8]}"


class ReplayLock:
    """A replay's hold on its topic (see the module docstring); use :func:`replay_lock`."""

    def __init__(self, client: SyncClient, keys: KeySpace, topic: Topic, ttl_ms: int = LOCK_TTL_MS) -> None:
        self.client = client
        self.topic = topic
        self.key = keys.dlq_replay_lock(topic)
        self.ttl_ms = ttl_ms
        self.token = _who()
        self._lost = threading.Event()

    def take(self) -> None:
        """Take the lock; :class:`ReplayInProgressError` naming the holder if another has it."""
        while not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            holder = self.client.get(self.key)
            if holder is not None:  # None: it expired between the two commands, try again
                ttl = int(self.client.pttl(self.key))
                raise ReplayInProgressError(self.topic, reply_text(holder), ttl)

    def renew(self) -> None:
        """Extend the lock (or take it again if it lapsed and is free); note it lost otherwise."""
        if int(self.client.eval(TAKE_OR_EXTEND, 1, self.key, self.token, str(self.ttl_ms)) or 0) != 1:
            self._lost.set()

    def check(self, *, published: int = 0, total: int = 0, done: str = "publishing #") -> None:
        """Raise :class:`ReplayLockLostError` before a write if another replay took the lock
        meanwhile (this one was paused past the TTL): the two must not write together. The
        caller says how far it got for the message: ``done`` with ``#`` for "``published`` of
        ``total``" ("publishing #", "rewinding # partitions")."""
        if self._lost.is_set():
            holder = self.client.get(self.key)
            held_by = reply_text(holder) if holder else "?"
            raise ReplayLockLostError(self.topic, held_by, published=published, total=total, done=done)

    def release(self) -> None:
        """Give the lock back if this replay still holds it."""
        self.client.eval(RELEASE_IF_OWNER, 1, self.key, self.token)


@contextlib.contextmanager
def replay_lock(
    client: SyncClient, keys: KeySpace, topic: Topic, ttl_ms: int = LOCK_TTL_MS
) -> Iterator[ReplayLock]:
    """Hold the replay lock of ``topic`` for the block: taken at entry (or
    :class:`ReplayInProgressError`), renewed every third of ``ttl_ms`` by a thread, given back
    at exit, whatever the block raised."""
    lock = ReplayLock(client, keys, topic, ttl_ms)
    lock.take()
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(ttl_ms / 3000):
            try:
                lock.renew()
            except Exception as exc:  # Redis away: the TTL decides, try again next tick
                _log.warning("dlq.replay_lock_renew_failed", topic=topic.value, error=str(exc))

    thread = threading.Thread(target=keep, name=f"dlq-replay-lock-{topic.value}", daemon=True)
    thread.start()
    try:
        yield lock
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):  # unreleased, it expires within the TTL
            lock.release()
