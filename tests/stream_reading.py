"""Reading what a pipeline published, by content: trade ids, order results (sync client)."""

from __future__ import annotations

from typing import Any

import redis

from core.codec import build_codec
from core.topics import CodecPath, KeySpace, Profile, Topic

__all__ = ["published_trade_ids", "stream_values", "trade_key"]

_READER = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)


def stream_values(client: redis.Redis, keys: KeySpace, topic: Topic) -> list[dict[str, Any]]:
    """Every message of ``topic`` (all partitions, merged in entry-id order) as business values."""
    entries: list[tuple[bytes, Any]] = []
    for stream in keys.streams(topic):
        entries += list(client.xrange(stream))
    entries.sort(key=lambda e: tuple(int(x) for x in e[0].split(b"-")))
    out = []
    for entry_id, fields in entries:
        # The entry id: a legacy-shaped message's missing time is its server time (lenient).
        message = _READER.from_fields(topic, fields, entry_id=entry_id).message
        out.append(dict(_READER.as_dict(topic, message)))
    return out


def published_trade_ids(client: redis.Redis, keys: KeySpace) -> list[str]:
    """The ``trade_id`` of every market_data message, in publish order (Pydantic-path ws)."""
    return [str(v.get("trade_id")) for v in stream_values(client, keys, Topic.MARKET_DATA)]


def trade_key(values: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a trade on either path (the legacy path carries no trade id)."""
    return (values["symbol"], values["timestamp"], values["price"], values["volume"], str(values["side"]))
