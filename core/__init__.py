"""cdb-contracts core: contracts, codecs, settings, clock and the Redis transport."""

from core.errors import CdbError, ConfigError, ContractError, NotReplicatedError, TransportError
from core.topics import CodecPath, KeySpace, Profile, RedisMode, ServiceName, Topic, partition_of

__all__ = [
    "CdbError",
    "CodecPath",
    "ConfigError",
    "ContractError",
    "KeySpace",
    "NotReplicatedError",
    "Profile",
    "RedisMode",
    "ServiceName",
    "Topic",
    "TransportError",
    "partition_of",
]
