"""The Redis transport: publish to Pub/Sub + Stream, consume with groups, dead letters.

See docs/transport.md for the delivery guarantees (at-least-once on streams,
best effort on Pub/Sub) and what a handler must do.
"""

from core.redis.connection import connect_async, connect_sync, describe
from core.redis.consumer import Handler, StreamConsumer
from core.redis.dead_letters import (
    DEFAULT_DLQ_MAXLEN,
    DeadLetter,
    DeadLetterCause,
    DeadLetters,
    count_dead_letters,
    letter_fields,
    read_dead_letters,
)
from core.redis.observer import PubSubObserver
from core.redis.publisher import Publisher, publish_message
from core.redis.retry import RetryPolicy
from core.redis.wire import DEFAULT_STREAM_MAXLEN, StreamTrim

__all__ = [
    "DEFAULT_DLQ_MAXLEN",
    "DEFAULT_STREAM_MAXLEN",
    "DeadLetter",
    "DeadLetterCause",
    "DeadLetters",
    "Handler",
    "PubSubObserver",
    "Publisher",
    "RetryPolicy",
    "StreamConsumer",
    "StreamTrim",
    "connect_async",
    "connect_sync",
    "count_dead_letters",
    "describe",
    "letter_fields",
    "publish_message",
    "read_dead_letters",
]
