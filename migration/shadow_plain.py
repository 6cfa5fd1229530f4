"""Shadow mode's quick agreement check: equal attributes decide "same" without plain forms.

Comparing two decoded messages by the rules of :mod:`migration.shadow` means building
each side's plain form (``Codec.as_dict``: a Pydantic ``model_dump``, a legacy field
copy) and comparing field by field, about 3-4 us a message. Nearly every message
agrees, and for the messages the codecs produce the plain form of a plain value *is*
the value: a string, an int, a bool, ``None``, a finite float stay as they are, a
``StrEnum`` becomes its string. So when every field both sides have holds *plainly
equal* attribute values, the plain forms are the same too, and the message agrees;
this check answers that in about 1 us. Anything else (a difference, NaN or infinity,
``True`` vs ``1``, ``5`` vs ``5.0``, a nested value) is left to the full comparison,
which then decides exactly as before and reports the values it always reported.

:func:`plain_fields` tells, from the first full comparison of two message classes,
which fields to look at, and refuses the quick check to a pair whose plain forms are
not the attributes themselves: a class whose
serialisation changes values (a Pydantic serializer, a computed field) or whose plain
form holds other keys than its fields is always compared in full.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

__all__ = ["plain_fields", "plainly_same", "same_plain"]

_EXACT = frozenset({str, int, bool, type(None)})
"""Types whose equal values are the same under every rule (a float must also be finite)."""


class _StrEnums(dict[type, bool]):
    """type -> whether it is a ``StrEnum``, learnt on first sight (``isinstance`` on an enum
    costs more than the whole comparison of a field)."""

    def __missing__(self, kind: type) -> bool:
        self[kind] = answer = issubclass(kind, StrEnum)
        return answer


_STR_ENUM = _StrEnums()


def plainly_same(names: tuple[str, ...], mine: Any, theirs: Any) -> bool:
    """True when every field in ``names`` holds plainly equal values on both messages: the
    same exact type (str, int, bool, None) and equal, equal finite floats, or a ``StrEnum``
    and the string of its value. False means "not decided here", not "different"."""
    # One loop, no call per field: this runs for every compared message.
    for name in names:
        a = getattr(mine, name)
        b = getattr(theirs, name)
        if a == b:
            kind = type(a)
            if kind is type(b):
                if kind in _EXACT or (kind is float and a - a == 0.0):  # a - a is NaN for +-inf
                    continue
            elif (type(b) is str and _STR_ENUM[kind]) or (kind is str and _STR_ENUM[type(b)]):
                continue
        return False
    return True


class _Value:
    """One value as the attribute ``value`` (to ask :func:`plainly_same` about two values)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def same_plain(a: Any, b: Any) -> bool:
    """:func:`plainly_same` for two values."""
    return plainly_same(("value",), _Value(a), _Value(b))


def _field_names(message: Any) -> frozenset[str] | None:
    """The fields of ``message``'s class when its plain form can only hold those, else None."""
    cls = type(message)
    if isinstance(message, BaseModel):
        decorators = cls.__pydantic_decorators__
        if decorators.field_serializers or decorators.model_serializers or cls.__pydantic_computed_fields__:
            return None  # serialisation may change values: always compared in full
        return frozenset(cls.model_fields)
    if dataclasses.is_dataclass(message):
        return frozenset(f.name for f in dataclasses.fields(message))
    return None


def _holds_attributes(plain: Mapping[str, Any], message: Any, names: tuple[str, ...]) -> bool:
    """Whether each plain value in ``names`` is plainly the attribute itself."""
    return all(same_plain(getattr(message, name), plain[name]) for name in names)


def plain_fields(
    mine: Any, theirs: Any, plain_mine: Mapping[str, Any], plain_theirs: Mapping[str, Any]
) -> tuple[str, ...] | None:
    """From one full comparison of two messages (and their plain forms): the fields both plain
    forms have, for :func:`plainly_same` on later messages of the same two classes; None when
    those classes must always be compared in full (a plain form with other keys than the
    class's fields, or holding other values than the attributes)."""
    names = tuple(name for name in plain_mine if name in plain_theirs)
    eligible = (
        _field_names(mine) == frozenset(plain_mine)
        and _field_names(theirs) == frozenset(plain_theirs)
        and _holds_attributes(plain_mine, mine, names)
        and _holds_attributes(plain_theirs, theirs, names)
    )
    return names if eligible else None
