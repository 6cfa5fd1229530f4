"""Cross-field rules of the contracts, as JSON Schema ``if``/``then`` (defined in
:mod:`core.domain.rules`, next to the contracts, so the legacy guard can derive from them too)."""

from core.domain.rules import cross_field_rules

__all__ = ["cross_field_rules"]
