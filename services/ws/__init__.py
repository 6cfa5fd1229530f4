"""The ws service's trade sources: live MEXC spot v3 (protobuf) and CSV replay.

Sources hand :class:`Trade` objects to an async callback and know nothing of Redis;
the service wires that callback to the codec and the publisher.
"""

from typing import Any

from services.ws.replay import BUNDLED_TRADES, BUNDLED_TRADES_SMALL, load_trades, replay
from services.ws.trades import QUOTE_CURRENCIES, SourceError, Trade, to_mexc_symbol, to_pair

__all__ = [
    "BUNDLED_TRADES",
    "BUNDLED_TRADES_SMALL",
    "DEFAULT_URL",
    "QUOTE_CURRENCIES",
    "Backoff",
    "ClientStats",
    "MexcV3Client",
    "OnBadFrame",
    "OnTrade",
    "SourceError",
    "StaleConnectionError",
    "SubscriptionRefusedError",
    "Trade",
    "load_trades",
    "replay",
    "to_mexc_symbol",
    "to_pair",
]

_CLIENT_NAMES = frozenset(
    {
        "DEFAULT_URL",
        "Backoff",
        "ClientStats",
        "MexcV3Client",
        "OnBadFrame",
        "OnTrade",
        "StaleConnectionError",
        "SubscriptionRefusedError",
    }
)


def __getattr__(name: str) -> Any:
    # The live client pulls in websockets and protobuf: loaded on first use only, so the CSV
    # replay (cdb run, cdb matrix) and `cdb --help` start without them.
    if name in _CLIENT_NAMES:
        from services.ws import mexc_v3_client

        return getattr(mexc_v3_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
