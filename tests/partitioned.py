"""What the tests on `partitioned_redis` check of the keys a flow left: each carries the tag of
the partition it belongs to, and only the keys found by an id of no account go untagged."""

from __future__ import annotations

from redis.asyncio import Redis

from service.storage import keys

# Found by a digest or an id of no account, or shared by the deployment; each only ever used
# by single-key commands or one-key scripts (service.storage.keys).
UNTAGGED_PREFIXES = (
    "mh:accounts",
    "mh:api-key:",
    "mh:email-owner:",
    "mh:idempotency:",
    "mh:portal:",
    "mh:metrics",
    "mh:worker:heartbeat",
)


async def key_names(redis: Redis) -> set[str]:
    return {name.decode() async for name in redis.scan_iter(match="*")}


def in_partition(names: set[str], partition: int) -> set[str]:
    return {name for name in names if name.startswith(keys.in_partition(partition))}


async def assert_tagged(redis: Redis) -> set[str]:
    """Every key in `redis` carries a partition's tag or is one of the untagged kinds; the
    names, for more checks."""
    names = await key_names(redis)
    untagged = {name for name in names if not name.startswith("mh:{")}
    assert {n for n in untagged if not n.startswith(UNTAGGED_PREFIXES)} == set()
    return names
