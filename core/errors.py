"""One error root for cdb-contracts, with the families a caller can catch.

Every error the project raises on purpose derives from :class:`CdbError`:

- :class:`ContractError`: a message that cannot be decoded or encoded, on either
  path. It carries the topic, path, profile, the raw bytes and structured errors,
  so a service loop has one error branch for bad input.
- :class:`ConfigError`: a setting that is not one of its accepted values. It names
  the variable, so an operator knows which line of which env file to fix.
- :class:`TransportError`: Redis/PostgreSQL could not be reached after retries;
  :class:`NotReplicatedError`, one of them, says which published messages the
  replicas did not acknowledge in time (``REDIS_WAIT_REPLICAS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CdbError",
    "ConfigError",
    "ContractError",
    "ErrorDetail",
    "GroupRewoundError",
    "LeaseLostError",
    "NotReplicatedError",
    "StateAheadError",
    "TransportError",
]

ErrorDetail = dict[str, Any]
"""One structured error, shaped like an entry of ``pydantic.ValidationError.errors()``:
``type`` (a short machine-readable reason), ``loc`` (a tuple path), ``msg``, and
optionally ``input``."""

_PREVIEW_BYTES = 256


class CdbError(Exception):
    """Root of every error cdb-contracts raises on purpose."""


class ConfigError(CdbError):
    """A setting has a value outside its accepted set; names the variable."""

    def __init__(self, variable: str, value: object, accepted: Sequence[str], hint: str = "") -> None:
        self.variable = variable
        self.value = value
        self.accepted = tuple(accepted)
        text = f"{variable}={value!r} is not accepted; use one of: {', '.join(self.accepted)}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class TransportError(CdbError):
    """Redis or PostgreSQL stayed unreachable after the bounded retries."""


class NotReplicatedError(TransportError):
    """Messages reached the primary but not ``wanted`` replicas within the wait timeout.

    Redis replicates asynchronously: such a message is in the primary's stream now but
    would vanish if the primary died before replicating it. ``unacknowledged`` are the
    positions (in the sequence given to the publisher) of every message not confirmed;
    re-send exactly those (a duplicate is possible, never a loss). ``acknowledged`` is
    how many replicas confirmed the chunk that fell short.
    """

    def __init__(self, topic: str, unacknowledged: Sequence[int], wanted: int, acknowledged: int) -> None:
        self.topic = topic
        self.unacknowledged = list(unacknowledged)
        self.wanted = wanted
        self.acknowledged = acknowledged
        super().__init__(
            f"{len(self.unacknowledged)} {topic} message(s) not acknowledged by {wanted} replica(s) "
            f"(only {acknowledged} did in time)"
        )


class GroupRewoundError(TransportError):
    """A consumer group delivered again an entry the consumer had acknowledged: the server
    lost acknowledged writes (a fail-over to a replica that had not received them), so the
    outputs of those entries may be gone too, and any state a handler derived from them is
    ahead of Redis. Rebuild that state from the streams and start over; reprocessing with
    the old state would skip them as duplicates and lose their outputs."""


class LeaseLostError(TransportError):
    """This instance no longer holds the lease of a partition it was working on (it was
    paused or cut off past the lease, and another instance may own the partition now).
    Nothing more is read, published or acknowledged there; the partition's worker ends and
    its state is dropped (rebuilt from the streams if the partition comes back)."""


class StateAheadError(TransportError):
    """A stateful partition worker's batch was handled but its outputs or acknowledgement did
    not go out: its state is ahead of what Redis holds. The worker ends and the partition's
    state is rebuilt from the streams before anything else is handled."""


class ContractError(CdbError):
    """A message failed to decode or encode; the same type on every path.

    ``errors`` is a list of :data:`ErrorDetail`; ``reason`` is the first error's
    ``type``, a bounded value safe to use as a metric label.
    """

    def __init__(
        self,
        *,
        topic: str,
        path: str,
        profile: str | None,
        raw: bytes,
        errors: Sequence[ErrorDetail],
    ) -> None:
        self.topic = topic
        self.path = path
        self.profile = profile
        self.raw = raw
        self.errors = [dict(e) for e in errors]
        super().__init__(self._summary())

    @property
    def reason(self) -> str:
        """The first error's type (e.g. ``missing``, ``json_invalid``, ``greater_than``)."""
        return str(self.errors[0].get("type", "unknown")) if self.errors else "unknown"

    @property
    def raw_preview(self) -> str:
        """The first bytes of the payload, for logs; never the whole of a huge message."""
        head = self.raw[:_PREVIEW_BYTES].decode("utf-8", errors="replace")
        more = len(self.raw) - _PREVIEW_BYTES
        return head + (f"... (+{more} bytes)" if more > 0 else "")

    def loggable_errors(self) -> list[ErrorDetail]:
        """The structured errors with any ``input`` shortened, safe to put in a log line."""
        out: list[ErrorDetail] = []
        for err in self.errors:
            item = {k: v for k, v in err.items() if k not in ("input", "ctx", "url")}
            item["loc"] = list(err.get("loc", ()))
            if "input" in err:
                text = repr(err["input"])
                item["input"] = text if len(text) <= 80 else text[:77] + "..."
            out.append(item)
        return out

    def _summary(self) -> str:
        parts = []
        for err in self.errors[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ())) or "<message>"
            parts.append(f"{loc}: {err.get('msg', err.get('type'))}")
        if len(self.errors) > 3:
            parts.append(f"... {len(self.errors) - 3} more")
        profile = f"/{self.profile}" if self.profile else ""
        return f"bad {self.topic} message on the {self.path}{profile} path: " + "; ".join(parts)
