"""The ws service's trade sources: live MEXC spot v3 (protobuf) and CSV replay.

Sources hand :class:`Trade` objects to an async callback and know nothing of Redis;
the service wires that callback to the codec and the publisher.
"""

from services.ws.mexc_v3_client import (
    DEFAULT_URL,
    Backoff,
    ClientStats,
    MexcV3Client,
    OnBadFrame,
    OnTrade,
    StaleConnectionError,
    SubscriptionRefusedError,
)
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
