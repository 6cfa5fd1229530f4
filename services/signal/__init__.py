"""The signal service: trades in, momentum signals out."""

from services.signal.service import SignalService
from services.signal.strategy import MomentumStrategy, SignalParams, TradeView

__all__ = ["MomentumStrategy", "SignalParams", "SignalService", "TradeView"]
