"""cdb-contracts core: contracts, codecs, settings, clock and the Redis transport."""

from core.errors import CdbError, ConfigError, ContractError, TransportError
from core.topics import KeySpace, Path, Profile, ServiceName, Topic

__all__ = [
    "CdbError",
    "ConfigError",
    "ContractError",
    "KeySpace",
    "Path",
    "Profile",
    "ServiceName",
    "Topic",
    "TransportError",
]
