"""The AsyncAPI 3.0 document of the pipeline: channels, streams, messages and who uses them.

Derived from the version declaration (:data:`core.versions.declaration.VERSIONS`: one
message and payload schema per declared contract version of each topic, ``api_version``
telling them apart), :class:`core.topics.KeySpace` (addresses) and
:class:`core.topics.ServiceName` (which service sends or receives on each channel), so a
new version, a renamed topic, a key prefix or a new consumer shows up here without
editing this module.

Each topic has three channels: the Pub/Sub channel (``market_data``), the Redis
Stream that carries it durably (``market_data_stream``, read with consumer
groups) and the dead-letter stream (``market_data_dlq``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core.redis.dead_letters import DeadLetterCause
from core.topics import KeySpace, ServiceName, Topic
from core.versions.declaration import VERSIONS, version_key
from core.versions.schema import version_changes, version_rules

__all__ = ["ASYNCAPI_VERSION", "DEAD_LETTER", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
"""The AsyncAPI specification version the document follows."""

DEAD_LETTER = "DeadLetter"
"""Name of the dead-letter message in ``components``."""

_STREAM_ENCODING = (
    "Redis Stream entry: one stream field per message field, each value the JSON encoding "
    "of that field's value (so `redis-cli XRANGE` shows it readably and null/true/false survive)."
)
_VERSIONS_TEXT = (
    "Messages of contract versions {versions}: the `api_version` field says which; a producer writes "
    "one (PRODUCE_VERSION_<TOPIC>), a consumer reads all it has not retired."
)
_TEXT = {"type": "string"}
_DEAD_LETTER_FIELDS: dict[str, dict[str, Any]] = {
    "topic": {**_TEXT, "description": "Topic of the refused message.", "enum": [t.value for t in Topic]},
    "service": {**_TEXT, "description": "Service that refused it.", "enum": [s.value for s in ServiceName]},
    "path": {**_TEXT, "description": "Codec path that refused it: legacy or pydantic."},
    "profile": {**_TEXT, "description": "lenient or strict on the pydantic path; empty on legacy."},
    "stream_id": {**_TEXT, "description": "Its id in the topic stream; empty for ws's exchange frames."},
    "partition": {
        **_TEXT,
        "pattern": "^[0-9]*$",
        "description": "Partition stream it was read from (decimal); empty when not read from a partition "
        "stream or written before it was recorded. Entry ids are unique per stream only.",
    },
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


def _versions() -> list[tuple[Topic, str, type[BaseModel]]]:
    """Every declared (topic, version, model), oldest version first within a topic."""
    return [(t, v, VERSIONS[t].model(v)) for t in Topic for v in VERSIONS[t].versions]


def _schemas() -> dict[str, Any]:
    versions = _versions()
    _, top = models_json_schema(
        [(model, "validation") for _, _, model in versions],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top["$defs"])
    for topic, version, model in versions:
        schema = schemas[model.__name__]
        rules = version_rules(topic, schema)
        if rules:
            schema = {**schema, "allOf": rules}
        changes = version_changes(topic, version)
        if changes is not None:
            schema = {**schema, "x-cdb-changes": changes}
        schemas[model.__name__] = schema
    schemas[DEAD_LETTER] = _DEAD_LETTER_SCHEMA
    return schemas


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {
        model.__name__: {
            "name": model.__name__,
            "title": f"{topic.value} {version}",
            "summary": _summary(model),
            "description": f"A {topic.value} message of contract version {version}: its `api_version` "
            f"is `{version}`, which tells it apart from the other versions on the same channel.",
            "contentType": "application/json",
            "payload": _ref("components", "schemas", model.__name__),
            "x-api-version": version,
        }
        for topic, version, model in _versions()
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
    for topic in Topic:
        message = {
            model.__name__: _ref("components", "messages", model.__name__)
            for model in (VERSIONS[topic].model(v) for v in VERSIONS[topic].versions)
        }
        versions = _VERSIONS_TEXT.format(versions=", ".join(VERSIONS[topic].versions))
        channels[ids.channel(topic)] = {
            "address": keys.channel(topic),
            "title": f"{topic.value} (Pub/Sub)",
            "description": f"Redis Pub/Sub channel of {topic.value}: one JSON document per message. "
            f"{versions}",
            "messages": message,
        }
        channels[ids.stream(topic)] = {
            "address": keys.stream(topic),
            "title": f"{topic.value} (stream)",
            "description": f"Durable copy of {topic.value}, read by consumer groups. {_STREAM_ENCODING} "
            f"{versions}",
            "messages": message,
        }
        channels[ids.dlq(topic)] = {
            "address": keys.dlq(topic),
            "title": f"{topic.value} (dead letters)",
            "description": f"Dead-letter stream for {topic.value} messages that could not be handled.",
            "messages": {DEAD_LETTER: _ref("components", "messages", DEAD_LETTER)},
        }
    return channels


def _operation(
    action: str, channel: str, messages: list[str], service: ServiceName, summary: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": _ref("channels", channel),
        "summary": summary,
        "messages": [_ref("channels", channel, "messages", m) for m in messages],
        "tags": [{"name": service.value}],
    }


def _names(topic: Topic) -> list[str]:
    """The message names of every declared version of ``topic``, oldest first."""
    return [VERSIONS[topic].model(v).__name__ for v in VERSIONS[topic].versions]


def _operations(keys: KeySpace) -> dict[str, Any]:
    ids = KeySpace()
    ops: dict[str, Any] = {}
    for service in ServiceName:
        out: Topic = service.produces
        names = _names(out)
        writes = f" in the version PRODUCE_VERSION_{out.value.upper()} names"
        ops[f"{service.value}_publishes_{ids.channel(out)}"] = _operation(
            "send",
            ids.channel(out),
            names,
            service,
            f"{service.value} publishes every {out.value} message{writes}.",
        )
        ops[f"{service.value}_appends_{ids.stream(out)}"] = _operation(
            "send",
            ids.stream(out),
            names,
            service,
            f"{service.value} appends every {out.value} message{writes}.",
        )
        source = service.consumes
        if source is not None:
            op = _operation(
                "receive",
                ids.stream(source),
                _names(source),
                service,
                f"{service.value} reads {source.value} in consumer group {keys.group(service)}: every "
                f"declared version but those retired in RETIRED_VERSIONS_{source.value.upper()}.",
            )
            op["x-consumer-group"] = keys.group(service)
            ops[f"{service.value}_reads_{ids.stream(source)}"] = op
        bad = service.dead_letters
        ops[f"{service.value}_dead_letters_{ids.dlq(bad)}"] = _operation(
            "send",
            ids.dlq(bad),
            [DEAD_LETTER],
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
            "version": max((v for t in Topic for v in VERSIONS[t].versions), key=version_key),
            "description": (
                "ws -> market_data -> signal -> signals -> risk -> orders -> execution -> order_results. "
                "Every topic is a Redis Pub/Sub channel plus a Redis Stream of the same messages. "
                "Each channel carries every declared contract version of its topic (one message per "
                "version; `api_version` tells them apart; core/versions/declaration.py); the document's "
                "version is the newest declared one. Consumers are tolerant readers: unknown fields are "
                "ignored. Timestamps are epoch ms."
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
