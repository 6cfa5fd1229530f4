"""What the consuming service will do with replayed dead letters, worked out before anything is written.

A replayed message is appended at the **end** of its topic stream, behind every entry
already there. Business logic that recognises old or repeated input then ignores it
on purpose (counted, but it does not count as a trade):

- ``market_data`` (signal's momentum strategy): a trade *older* than the newest trade of
  its symbol the strategy handles before it is ignored as **stale**; one of that same
  millisecond counts unless it is the same trade again (same trade id, or same content
  without one: a **duplicate**), as :meth:`services.signal.strategy.MomentumStrategy.decide`
  tells them apart (a sweep fills several trades of a symbol in one millisecond).
  Before it, here, means every entry of the symbol in the stream that the strategy
  reads or will read (its own partition's entries, already handled or still waiting),
  except the originals of dead letters (never handled), plus the letters replayed
  before it in the same run.
- ``signals`` (risk) and ``orders`` (execution): a message whose ``signal_id`` /
  ``order_id`` is already on the stream is a **duplicate**: risk repeats its earlier
  decision, execution its stored result; nothing new happens.
- ``order_results``: no consumer in the pipeline; nothing is ignored.

For context it also counts the letters **behind the group**: their original entry id
is at or before the consumer group's last-delivered id in their partition (the group
has moved past where they were). ``cdb dlq catch-up`` makes such letters count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from redis.exceptions import ResponseError

from core.codec import Decoded
from core.domain.trades import trade_key
from core.redis.dead_letters import DeadLetter
from core.redis.modes import SyncClient, reply_text
from core.topics import KeySpace, ServiceName, Topic, partition_of

__all__ = [
    "ReplayImpact",
    "assess_replay",
    "entry_key",
    "group_position",
    "iter_stream",
    "letter_partition",
    "letter_partitions",
    "parked_entries",
]

_PAGE = 1_000
_ID_FIELD = {Topic.SIGNALS: "signal_id", Topic.ORDERS: "order_id"}
_CONSUMER = {s.consumes: s for s in ServiceName if s.consumes is not None}


def entry_key(entry_id: str | bytes) -> tuple[int, int]:
    """An entry id as a sortable ``(ms, seq)`` pair."""
    ms, _, seq = reply_text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def iter_stream(client: SyncClient, stream: str, start: str = "-") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every entry of ``stream`` from ``start`` on, a page at a time: (id, field map as sent)."""
    while True:
        entries: Any = client.xrange(stream, min=start, max="+", count=_PAGE)
        for raw_id, fields in entries:
            yield reply_text(raw_id), fields
        if len(entries) < _PAGE:
            return
        start = "(" + reply_text(entries[-1][0])


def group_position(client: SyncClient, stream: str, group: str) -> str | None:
    """The last-delivered id of ``group`` on ``stream``; ``None`` when there is no such group."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except ResponseError:  # no such stream yet: no position
        return None
    for info in groups:
        if reply_text(info["name"]) == group:
            return reply_text(info["last-delivered-id"])
    return None


def letter_partition(client: SyncClient, keys: KeySpace, topic: Topic, letter: DeadLetter) -> int | None:
    """The partition whose stream still holds the letter's original entry, or ``None``.

    Entry ids are unique per stream only: the partition the letter recorded decides; for older
    letters (none recorded) the symbol's partition is tried first."""
    if letter.partition is not None:
        if letter.partition >= keys.partitions:
            return None
        found: Any = client.xrange(keys.stream(topic, letter.partition), letter.stream_id, letter.stream_id)
        return letter.partition if found else None
    candidates = list(range(keys.partitions))
    try:
        rendered = json.loads(letter.raw.decode("utf-8"))
        symbol = json.loads(rendered["symbol"])
        first = partition_of(str(symbol), keys.partitions)
        candidates.remove(first)
        candidates.insert(0, first)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    for partition in candidates:
        entries: Any = client.xrange(keys.stream(topic, partition), letter.stream_id, letter.stream_id)
        if entries:
            return partition
    return None


def letter_partitions(
    client: SyncClient, keys: KeySpace, topic: Topic, letters: Iterable[DeadLetter]
) -> dict[str, int | None]:
    """Dead-letter id -> the partition holding its original entry (``None``: gone), for every
    letter of ``letters`` read from a stream (:func:`letter_partition`, once each)."""
    return {x.entry_id: letter_partition(client, keys, topic, x) for x in letters if x.stream_id}


def parked_entries(
    keys: KeySpace, topic: Topic, letters: Iterable[DeadLetter], where: Mapping[str, int | None]
) -> set[tuple[str, str]]:
    """(partition stream, entry id) of the original entry of each of ``letters`` still in its
    stream (``where``: :func:`letter_partitions`): ids are unique per stream only."""
    return {
        (keys.stream(topic, partition), x.stream_id)
        for x in letters
        if (partition := where.get(x.entry_id)) is not None
    }


def _field(fields: Mapping[Any, Any], name: str) -> Any:
    raw = fields.get(name.encode(), fields.get(name))
    if raw is None:
        return None
    try:
        return json.loads(reply_text(raw))
    except ValueError:
        return None


@dataclass(frozen=True)
class ReplayImpact:
    """Per selected letter (dead-letter id): why the consumer would ignore its replay, if it would."""

    topic: Topic
    consumer: ServiceName | None
    ignored: dict[str, str]
    """Dead-letter id -> the reason its replayed copy would be ignored (stale, duplicate)."""
    behind_group: int
    """Selected letters whose original entry the consumer group has already moved past."""

    def reason(self, letter_id: str) -> str | None:
        """Why the replay of ``letter_id`` would be ignored, or ``None`` if it would count."""
        return self.ignored.get(letter_id)


def assess_replay(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    selected: Sequence[tuple[DeadLetter, Decoded]],
) -> ReplayImpact:
    """Which of ``selected`` (letters that re-decode, in replay order) the consumer would ignore."""
    consumer = _CONSUMER.get(topic)
    letters = list(_all_letters(client, keys, topic))
    parked = parked_entries(keys, topic, letters, letter_partitions(client, keys, topic, letters))
    behind = _behind_group(client, keys, topic, consumer, [x for x, _ in selected])
    if topic is Topic.MARKET_DATA:
        ignored = _stale_trades(client, keys, selected, parked)
    elif topic in _ID_FIELD:
        ignored = _duplicates(client, keys, topic, selected, parked)
    else:
        ignored = {}
    return ReplayImpact(topic, consumer, ignored, behind)


def _all_letters(client: SyncClient, keys: KeySpace, topic: Topic) -> Iterator[DeadLetter]:
    for raw_id, fields in iter_stream(client, keys.dlq(topic)):
        yield DeadLetter.from_entry(raw_id, fields)


def _behind_group(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    consumer: ServiceName | None,
    letters: Sequence[DeadLetter],
) -> int:
    if consumer is None:
        return 0
    positions = [group_position(client, s, keys.group(consumer)) for s in keys.streams(topic)]
    known = [entry_key(p) for p in positions if p is not None]
    if not known:
        return 0
    # The partition of a letter is not needed for this context figure: the lowest position
    # of any partition is a bound every partition has passed.
    floor = min(known)
    return sum(1 for x in letters if x.stream_id and entry_key(x.stream_id) <= floor)


_TRADE_FIELDS = ("symbol", "timestamp", "price", "volume", "side", "venue", "trade_id")


@dataclass
class _Newest:
    """A symbol's newest millisecond so far and its trades there (key -> entry id, "" for a letter)."""

    ts: int
    trades: dict[tuple[Any, ...], str]


def _stale_trades(
    client: SyncClient,
    keys: KeySpace,
    selected: Sequence[tuple[DeadLetter, Decoded]],
    parked: set[tuple[str, str]],
) -> dict[str, str]:
    symbols = {str(getattr(d.message, "symbol", "")) for _, d in selected}
    newest: dict[str, _Newest] = {}
    for stream in keys.streams(Topic.MARKET_DATA):
        for entry_id, fields in iter_stream(client, stream):
            if (stream, entry_id) in parked:
                continue
            trade = {name: _field(fields, name) for name in _TRADE_FIELDS}
            symbol, ts = trade["symbol"], trade["timestamp"]
            if symbol in symbols and isinstance(ts, int) and not isinstance(ts, bool):
                _seen(newest, str(symbol), ts, trade_key(SimpleNamespace(**trade)), entry_id)
    ignored: dict[str, str] = {}
    for letter, decoded in selected:
        trade = {name: getattr(decoded.message, name, None) for name in _TRADE_FIELDS}
        symbol, ts, key = str(trade["symbol"] or ""), int(trade["timestamp"] or 0), trade_key(decoded.message)
        seen = newest.get(symbol)
        if seen is not None and ts < seen.ts:
            where = _where(next(iter(seen.trades.values())))
            ignored[letter.entry_id] = (
                f"stale: {symbol} trade at {ts} is older than the trade at {seen.ts} ({where}) "
                "that signal handles before it"
            )
        elif seen is not None and ts == seen.ts and key in seen.trades:
            ignored[letter.entry_id] = (
                f"duplicate: the same {symbol} trade at {ts} ({_where(seen.trades[key])}) is handled "
                "before it"
            )
        else:
            _seen(newest, symbol, ts, key, "")
    return ignored


def _seen(newest: dict[str, _Newest], symbol: str, ts: int, key: tuple[Any, ...], entry_id: str) -> None:
    seen = newest.get(symbol)
    if seen is None or ts > seen.ts:
        newest[symbol] = _Newest(ts, {key: entry_id})
    elif ts == seen.ts:
        seen.trades.setdefault(key, entry_id)


def _where(entry_id: str) -> str:
    return f"entry {entry_id}" if entry_id else "a letter replayed before it"


def _duplicates(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    selected: Sequence[tuple[DeadLetter, Decoded]],
    parked: set[tuple[str, str]],
) -> dict[str, str]:
    name = _ID_FIELD[topic]
    wanted = {str(getattr(d.message, name, "")) for _, d in selected}
    on_stream: dict[str, str] = {}
    for stream in keys.streams(topic):
        for entry_id, fields in iter_stream(client, stream):
            value = _field(fields, name)
            if (stream, entry_id) not in parked and value in wanted:
                on_stream.setdefault(str(value), entry_id)
    ignored: dict[str, str] = {}
    consumer = _CONSUMER[topic].value
    for letter, decoded in selected:
        value = str(getattr(decoded.message, name, ""))
        if value in on_stream:
            where = on_stream[value] or "a letter replayed before it"
            ignored[letter.entry_id] = (
                f"duplicate: {name} {value} is already on the stream ({where}); {consumer} repeats "
                "what it did then"
            )
        else:
            on_stream[value] = ""
    return ignored
