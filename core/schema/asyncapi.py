"""The AsyncAPI 3.0 document of the pipeline: channels, streams, messages and who uses them.

Derived from :data:`core.codec.CONTRACTS` (messages and payload schemas),
:class:`core.topics.KeySpace` (addresses) and :class:`core.topics.ServiceName`
(which service sends or receives on each channel), so a renamed topic, a key
prefix or a new consumer shows up here without editing this module.

Each topic has three channels: the Pub/Sub channel (``market_data``), the Redis
Stream that carries it durably (``market_data_stream``, read with consumer
groups) and the dead-letter stream (``market_data_dlq``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core.codec import CONTRACTS
from core.domain.contracts import API_VERSION
from core.redis.dead_letters import DeadLetterCause
from core.schema.rules import cross_field_rules
from core.topics import KeySpace, ServiceName, Topic

__all__ = ["ASYNCAPI_VERSION", "DEAD_LETTER", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
"""The AsyncAPI specification version the document follows."""

DEAD_LETTER = "DeadLetter"
"""Name of the dead-letter message in ``components``."""

_STREAM_ENCODING = (
    "Redis Stream entry: one stream field per message field, each value the JSON encoding "
    "of that field's value (so `redis-cli XRANGE` shows it readably and null/true/false survive)."
)
_TEXT = {"type": "string"}
_DEAD_LETTER_FIELDS: dict[str, dict[str, Any]] = {
    "topic": {**_TEXT, "description": "Topic of the refused message.", "enum": [t.value for t in Topic]},
    "service": {**_TEXT, "description": "Service that refused it.", "enum": [s.value for s in ServiceName]},
    "path": {**_TEXT, "description": "Codec path that refused it: legacy or pydantic."},
    "profile": {**_TEXT, "description": "lenient or strict on the pydantic path; empty on legacy."},
    "stream_id": {**_TEXT, "description": "Its id in the topic stream; empty for ws's exchange frames."},
    "cause": {**_TEXT, "description": "Why it was parked.", "enum": [c.value for c in DeadLetterCause]},
    "reason": {**_TEXT, "description": "Type of the first error: a bounded value, safe as a metric label."},
    "error": {
        **_TEXT,
        "description": "JSON array of structured errors (type, loc, msg), as pydantic reports.",
    },
    "deliveries": {**_TEXT, "pattern": "^[0-9]+$", "description": "How often it was delivered (decimal)."},
    "time_ms": {
        **_TEXT,
        "pattern": "^[0-9]+$",
        "description": "When it was parked, epoch ms (decimal).",
        "unit": "ms",
    },
    "raw": {**_TEXT, "description": "The bytes as received (binary-safe stream field), for replay."},
}
_DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": DEAD_LETTER,
    "description": (
        "A message a service could not handle, parked for the operator (`cdb dlq`): the raw bytes "
        "as received, the structured errors, and which service and path refused it. A Redis Stream "
        "entry: every field is a string."
    ),
    "properties": _DEAD_LETTER_FIELDS,
    "required": list(_DEAD_LETTER_FIELDS),
}


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in CONTRACTS.values()],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top["$defs"])
    for model in CONTRACTS.values():
        rules = cross_field_rules(model)
        if rules:
            schemas[model.__name__] = {**schemas[model.__name__], "allOf": rules}
    schemas[DEAD_LETTER] = _DEAD_LETTER_SCHEMA
    return schemas


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {
        model.__name__: {
            "name": model.__name__,
            "title": model.__name__,
            "summary": _summary(model),
            "contentType": "application/json",
            "payload": _ref("components", "schemas", model.__name__),
        }
        for model in CONTRACTS.values()
    }
    messages[DEAD_LETTER] = {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A message that failed to decode or to be handled, with the reason.",
        "payload": _ref("components", "schemas", DEAD_LETTER),
    }
    return messages


def _channels(keys: KeySpace) -> dict[str, Any]:
    ids = KeySpace()  # channel ids are the unprefixed names; addresses carry the prefix
    channels: dict[str, Any] = {}
    for topic, model in CONTRACTS.items():
        message = {model.__name__: _ref("components", "messages", model.__name__)}
        channels[ids.channel(topic)] = {
            "address": keys.channel(topic),
            "title": f"{topic.value} (Pub/Sub)",
            "description": f"Redis Pub/Sub channel of {topic.value}: one JSON document per message.",
            "messages": message,
        }
        channels[ids.stream(topic)] = {
            "address": keys.stream(topic),
            "title": f"{topic.value} (stream)",
            "description": f"Durable copy of {topic.value}, read by consumer groups. {_STREAM_ENCODING}",
            "messages": message,
        }
        channels[ids.dlq(topic)] = {
            "address": keys.dlq(topic),
            "title": f"{topic.value} (dead letters)",
            "description": f"Dead-letter stream for {topic.value} messages that could not be handled.",
            "messages": {DEAD_LETTER: _ref("components", "messages", DEAD_LETTER)},
        }
    return channels


def _operation(action: str, channel: str, message: str, service: ServiceName, summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": _ref("channels", channel),
        "summary": summary,
        "messages": [_ref("channels", channel, "messages", message)],
        "tags": [{"name": service.value}],
    }


def _operations(keys: KeySpace) -> dict[str, Any]:
    ids = KeySpace()
    ops: dict[str, Any] = {}
    for service in ServiceName:
        out: Topic = service.produces
        name = CONTRACTS[out].__name__
        ops[f"{service.value}_publishes_{ids.channel(out)}"] = _operation(
            "send", ids.channel(out), name, service, f"{service.value} publishes every {out.value} message."
        )
        ops[f"{service.value}_appends_{ids.stream(out)}"] = _operation(
            "send", ids.stream(out), name, service, f"{service.value} appends every {out.value} message."
        )
        source = service.consumes
        if source is not None:
            op = _operation(
                "receive",
                ids.stream(source),
                CONTRACTS[source].__name__,
                service,
                f"{service.value} reads {source.value} in consumer group {keys.group(service)}.",
            )
            op["x-consumer-group"] = keys.group(service)
            ops[f"{service.value}_reads_{ids.stream(source)}"] = op
        bad = service.dead_letters
        ops[f"{service.value}_dead_letters_{ids.dlq(bad)}"] = _operation(
            "send",
            ids.dlq(bad),
            DEAD_LETTER,
            service,
            f"{service.value} parks {bad.value} input it cannot handle.",
        )
    return ops


def asyncapi_document(keys: KeySpace) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the pipeline with the key names of ``keys``."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "cdb-contracts pipeline",
            "version": API_VERSION,
            "description": (
                "ws -> market_data -> signal -> signals -> risk -> orders -> execution -> order_results. "
                "Every topic is a Redis Pub/Sub channel plus a Redis Stream of the same messages. "
                "Consumers are tolerant readers: unknown fields are ignored. Timestamps are epoch ms."
            ),
            "tags": [{"name": s.value, "description": f"the {s.value} service"} for s in ServiceName],
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "redis:6379",
                "protocol": "redis",
                "description": "Redis (or Redis Cluster); each service logs in as its own ACL user.",
                "security": [_ref("components", "securitySchemes", "redisAcl")],
            }
        },
        "channels": _channels(keys),
        "operations": _operations(keys),
        "components": {
            "schemas": _schemas(),
            "messages": _messages(),
            "securitySchemes": {
                "redisAcl": {
                    "type": "userPassword",
                    "description": "Per-service Redis ACL user (least privilege); see docs/security.md.",
                }
            },
        },
    }
