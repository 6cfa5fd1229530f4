"""Small shared utilities: the injectable clock (:mod:`core.utils.clock`), re-exported whole,
so this package's surface is the clock's own ``__all__`` and cannot drift from it."""

from core.utils import clock
from core.utils.clock import *  # noqa: F403  (every name of clock.__all__)

__all__ = clock.__all__
