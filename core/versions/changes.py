"""The kinds of change between two contract versions, as data (Cadwyn-style).

Each change knows how to move a message's values one step **up** (older -> newer, for a reader
on the newer version) and one step **down** (newer -> older, for a producer writing for readers
still on the older version). The values are a model's ``model_dump()`` (Python mode): decimals
are :class:`~decimal.Decimal`, enums their members. A value that cannot be represented in the
target version raises :class:`ConversionError`; nothing is guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "Change",
    "ConversionError",
    "EnumValueAdded",
    "FieldAdded",
    "FieldRemoved",
    "FieldRenamed",
    "ValueConverted",
]

Values = dict[str, Any]


class ConversionError(ValueError):
    """A value cannot be carried into the target version (it would be lost or changed)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class FieldAdded:
    """A field the newer version adds, with the default an older message means.

    Down: the field is dropped; with ``refuse_lossy_down`` a value other than the default is
    refused instead (an old reader would act differently, e.g. an IOC order read as GTC).
    """

    name: str
    default: Any
    refuse_lossy_down: bool = False
    breaking: bool = False

    def up(self, values: Values) -> None:
        """Fill the default (an older message never had the field)."""
        values.setdefault(self.name, self.default)

    def down(self, values: Values) -> None:
        """Drop the field (refused when it would change meaning and ``refuse_lossy_down``)."""
        value = values.pop(self.name, self.default)
        if self.refuse_lossy_down and value != self.default:
            raise ConversionError(
                self.name,
                f"{value!r} cannot be written for a reader of the older version (it means {self.default!r})",
            )

    def describe(self) -> str:
        """One line for people (docs, ``cdb``)."""
        return f"{self.name} added (older messages mean {_shown(self.default)})"


@dataclass(frozen=True)
class FieldRemoved:
    """A field the newer version drops; ``default``: what is written for older readers."""

    name: str
    default: Any
    breaking: bool = True

    def up(self, values: Values) -> None:
        """Drop the field."""
        values.pop(self.name, None)

    def down(self, values: Values) -> None:
        """Write the stated default for an older reader."""
        values[self.name] = self.default

    def describe(self) -> str:
        """One line for people."""
        return f"{self.name} removed (older readers get {_shown(self.default)})"


@dataclass(frozen=True)
class FieldRenamed:
    """A field renamed; the value is kept as is (combine with :class:`ValueConverted` if not)."""

    old: str
    new: str
    breaking: bool = True

    def up(self, values: Values) -> None:
        """Move ``old`` to ``new``."""
        if self.old in values:
            values[self.new] = values.pop(self.old)

    def down(self, values: Values) -> None:
        """Move ``new`` back to ``old``."""
        if self.new in values:
            values[self.old] = values.pop(self.new)

    def describe(self) -> str:
        """One line for people."""
        return f"{self.old} renamed {self.new}"


@dataclass(frozen=True)
class ValueConverted:
    """A field whose type or unit changed: ``up``/``down`` convert one non-null value and
    ``rounding`` says exactly what is lost in each direction (shown in the docs)."""

    name: str
    to_newer: Callable[[Any], Any]
    to_older: Callable[[Any], Any]
    rounding: str
    summary: str = "type changed"
    breaking: bool = True

    def up(self, values: Values) -> None:
        """Convert the value to the newer type."""
        if values.get(self.name) is not None:
            values[self.name] = self.to_newer(values[self.name])

    def down(self, values: Values) -> None:
        """Convert the value to the older type."""
        if values.get(self.name) is not None:
            try:
                values[self.name] = self.to_older(values[self.name])
            except ConversionError:
                raise
            except (ValueError, ArithmeticError) as exc:
                raise ConversionError(self.name, str(exc)) from None

    def describe(self) -> str:
        """One line for people."""
        return f"{self.name}: {self.summary}"


@dataclass(frozen=True)
class EnumValueAdded:
    """An enum value the newer version adds; down, it becomes ``fallback`` or (None) is refused."""

    name: str
    value: str
    fallback: str | None = None
    breaking: bool = False

    def up(self, values: Values) -> None:
        """Nothing: every older value still exists."""

    def down(self, values: Values) -> None:
        """Map the new value to ``fallback``, or refuse it."""
        if str(values.get(self.name)) != self.value:
            return
        if self.fallback is None:
            raise ConversionError(self.name, f"{self.value!r} does not exist in the older version")
        values[self.name] = self.fallback

    def describe(self) -> str:
        """One line for people."""
        then = f"written as {self.fallback!r}" if self.fallback else "refused"
        return f"{self.name} gains {self.value!r} (for older readers: {then})"


def _shown(value: Any) -> str:
    return json.dumps(getattr(value, "value", value), default=str)  # an enum as its wire value


Change = FieldAdded | FieldRemoved | FieldRenamed | ValueConverted | EnumValueAdded
"""Any declared change."""


def float_to_decimal(value: float) -> Decimal:
    """A float as the shortest decimal that reads back as the same float (Python's ``repr``):
    ``0.1`` -> ``Decimal("0.1")``, not the binary expansion. Exact for every finite float; ``-0.0``
    becomes ``0.0`` (the wire has no signed zero)."""
    return Decimal(repr(abs(value) if value == 0 else value))


def decimal_to_float(value: Decimal) -> float:
    """The nearest binary float (IEEE 754 round-half-even); exact when the decimal has at most 15
    significant digits. A value past the float range is refused."""
    out = float(value)
    if out in (float("inf"), float("-inf")):
        raise ConversionError("value", f"{value} is beyond the float range")
    if out == 0 and value != 0:
        raise ConversionError("value", f"{value} is below the smallest float")
    return out
