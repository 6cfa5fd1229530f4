"""The risk service: signals in, orders within the limits out."""

from services.risk.limits import Decision, RiskEngine, RiskLimits, SignalView
from services.risk.service import RiskService

__all__ = ["Decision", "RiskEngine", "RiskLimits", "RiskService", "SignalView"]
