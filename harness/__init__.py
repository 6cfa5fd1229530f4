"""Test and fault harness: the mixed-version matrix, local Redis launchers and the pytest plugin.

The matrix lives in :mod:`harness.matrix` and the pytest plugin in :mod:`harness.testing`
(``pytest_plugins = ("harness.testing",)``); this package re-exports the launchers only, so
importing it does not load the pipeline.
"""

from harness.local_redis import LocalRedisServer, free_port
from harness.local_topologies import LocalRedisCluster, LocalSentinelSetup

__all__ = ["LocalRedisCluster", "LocalRedisServer", "LocalSentinelSetup", "free_port"]
