"""Converters derived from the declaration: any version of a topic to any other.

``convert(topic, message, target)`` walks the declared steps (up for a reader on a newer
version, down for a producer writing for older readers), applies each change to the values and
validates the result with the target version's model, so a converted message obeys every rule
of its version. A value that cannot be carried raises :class:`ConversionError`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from core.topics import Topic
from core.versions.changes import Change, ConversionError
from core.versions.declaration import VERSIONS

__all__ = ["ConversionError", "convert", "convert_values", "version_of"]


def version_of(message: BaseModel) -> str:
    """The ``api_version`` a contract instance carries."""
    return str(message.api_version)  # type: ignore[attr-defined]


_Plan = tuple[tuple[tuple[Change, ...], bool, str], ...]
_PLANS: dict[tuple[Topic, str, str], _Plan] = {}
"""Per (topic, source, target): each step's changes in the order they apply, its direction and the
version it reaches. Derived once from the declaration (which never changes at run time): services
whose code is on another version convert every message, so the walk must not be re-planned each time."""


def _plan(topic: Topic, source: str, target: str) -> _Plan:
    key = (topic, source, target)
    plan = _PLANS.get(key)
    if plan is None:
        plan = tuple(
            (
                step.changes if upwards else tuple(reversed(step.changes)),
                upwards,
                step.newer if upwards else step.older,
            )
            for step, upwards in VERSIONS[topic].path(source, target)
        )
        _PLANS[key] = plan
    return plan


def convert_values(topic: Topic, values: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    """``values`` (of version ``source``) moved to ``target``, unvalidated."""
    out = dict(values)
    for changes, upwards, reached in _plan(topic, source, target):
        for change in changes:
            change.up(out) if upwards else change.down(out)
        out["api_version"] = reached
    return out


def convert(topic: Topic, message: BaseModel, target: str) -> BaseModel:
    """``message`` as the ``target`` version's model (the same object when already there).

    Raises :class:`ConversionError` when a value does not fit ``target`` (its rules included).
    """
    source = version_of(message)
    if source == target:
        return message
    values = convert_values(topic, message.model_dump(), source, target)
    model = VERSIONS[topic].model(target)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise ConversionError(where, f"{source} -> {target}: {first['msg']}") from None
