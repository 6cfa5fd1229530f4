"""MEXC spot v3 control messages: JSON text frames for subscribing and keep-alive.

As MEXC documents them (spot v3 API docs, "Websocket Market Streams"):

- subscribe: ``{"method": "SUBSCRIPTION", "params": ["<channel>", ...]}``
- its reply: ``{"id": 0, "code": 0, "msg": "<channel>"}`` -- ``msg`` echoes the channel
- keep-alive: ``{"method": "PING"}`` -> ``{"id": 0, "code": 0, "msg": "PONG"}``

A refused subscription may still come back with ``code`` 0; the refusal is only in
``msg``, e.g. ``"Not Subscribed successfully! [spot@public...@BTCUSDT].  Reason: Blocked!"``
(MEXC writes a full-width colon after "Reason").
:meth:`ControlReply.refuses` therefore reads the text, not just the code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.ws.trades import SourceError

__all__ = ["PING", "REFUSAL_MARKER", "ControlReply", "parse_control", "subscription"]

PING = json.dumps({"method": "PING"})
"""MEXC's application-level keep-alive request."""

REFUSAL_MARKER = "Not Subscribed successfully"
"""The text MEXC puts in ``msg`` when it refuses a subscription (even with ``code`` 0)."""

_PONG = "PONG"


def subscription(channels: Iterable[str]) -> str:
    """The ``SUBSCRIPTION`` request for ``channels``."""
    return json.dumps({"method": "SUBSCRIPTION", "params": list(channels)})


@dataclass(frozen=True, slots=True)
class ControlReply:
    """A decoded ``{"id", "code", "msg"}`` reply."""

    id: int
    code: int
    msg: str

    @property
    def is_pong(self) -> bool:
        """True for the reply to a ``PING``."""
        return self.msg == _PONG

    def refuses(self) -> bool:
        """True when the reply refuses a request: a non-zero code, or MEXC's refusal text."""
        return self.code != 0 or REFUSAL_MARKER.lower() in self.msg.lower()

    def names(self, channel: str) -> bool:
        """True when ``msg`` mentions ``channel`` (an ack echoes it, a refusal quotes it)."""
        return channel.lower() in self.msg.lower()


def parse_control(text: str) -> ControlReply:
    """Decode a text frame; :class:`SourceError` (``control_invalid``) if it is not a reply."""
    try:
        obj: Any = json.loads(text)
    except ValueError as exc:
        raise SourceError("control_invalid", f"text frame is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("msg"), str):
        raise SourceError("control_invalid", f"text frame is not an id/code/msg reply: {text[:200]!r}")
    code = obj.get("code", 0)
    ident = obj.get("id", 0)
    if isinstance(code, bool) or not isinstance(code, int) or isinstance(ident, bool):
        raise SourceError("control_invalid", f"reply code {code!r} is not an integer")
    return ControlReply(id=ident if isinstance(ident, int) else 0, code=code, msg=obj["msg"])
