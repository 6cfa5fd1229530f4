"""cdb-contracts core: contracts, codecs, settings, clock and the Redis transport."""

from core.errors import CdbError, ConfigError, ContractError, NotReplicatedError, TransportError
from core.topics import KeySpace, Path, Profile, RedisMode, ServiceName, Topic, partition_of

__all__ = [
    "CdbError",
    "ConfigError",
    "ContractError",
    "KeySpace",
    "NotReplicatedError",
    "Path",
    "Profile",
    "RedisMode",
    "ServiceName",
    "Topic",
    "TransportError",
    "partition_of",
]
