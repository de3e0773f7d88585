"""The one-node cluster the partitioned tests run on refuses what a real cluster refuses."""

import pytest
import redis.exceptions
from redis.asyncio import Redis

from service.storage import keys

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_a_script_over_two_partitions_is_refused(partitioned_redis: Redis) -> None:
    same = [keys.in_partition(3) + "a", keys.in_partition(3) + "b"]
    assert await partitioned_redis.eval("return #KEYS", 2, *same) == 2
    with pytest.raises(redis.exceptions.ResponseError, match="CROSSSLOT"):
        await partitioned_redis.eval("return #KEYS", 2, same[0], keys.in_partition(4) + "a")
