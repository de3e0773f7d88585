"""The AutoPipeline on a real three-master Redis Cluster: commands routed to their key's
node and batched there, scripts loaded per node, MOVED and restarts survived."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode

from devtools.redis_cluster import PrivateCluster
from service.storage.autopipeline import AutoPipeline
from service.storage.cluster_pipeline import ClusterAutoPipeline
from service.storage.connection import autopipeline_for, register_script

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

INCR_BY_ARGV = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def keys_on_every_master(cluster: RedisCluster, per_node: int = 1) -> dict[str, list[str]]:
    """`per_node` key names served by each master, by the master's name."""
    await cluster.initialize()
    found: dict[str, list[str]] = {node.name: [] for node in cluster.get_primaries()}
    i = 0
    while any(len(names) < per_node for names in found.values()):
        key = f"mh:test:{i}"
        names = found[cluster.get_node_from_key(key).name]
        if len(names) < per_node:
            names.append(key)
        i += 1
    return found


def master_of(redis_cluster: PrivateCluster, node: ClusterNode) -> int:
    return next(i for i, n in enumerate(redis_cluster.nodes) if n.port == int(node.port))


class TestAutopipelineFor:
    async def test_a_cluster_client_gets_the_routing_pipeline(
        self, cluster_redis: RedisCluster
    ) -> None:
        assert isinstance(autopipeline_for(cluster_redis), ClusterAutoPipeline)

    async def test_one_server_keeps_its_own(self, real_redis: object) -> None:
        pipeline = autopipeline_for(real_redis)  # type: ignore[arg-type]
        assert type(pipeline) is AutoPipeline


class TestRouting:
    async def test_commands_for_every_master_are_batched_and_each_caller_gets_its_reply(
        self, cluster_redis: RedisCluster
    ) -> None:
        by_node = await keys_on_every_master(cluster_redis, per_node=20)
        pipeline = autopipeline_for(cluster_redis)
        all_keys = [key for names in by_node.values() for key in names]
        replies = await asyncio.gather(
            *(pipeline.execute("INCRBY", key, n) for n, key in enumerate(all_keys, 1))
        )
        assert replies == list(range(1, len(all_keys) + 1))
        # A batch per node, not a round trip per command.
        assert pipeline.round_trips == len(by_node) == 3
        assert pipeline.redirected == 0  # type: ignore[attr-defined]
        # Each value is on the master serving its key.
        for name, names in by_node.items():
            node = cluster_redis.get_node(node_name=name)
            assert node is not None
            for key in names:
                value = await node.execute_command("GET", key)
                assert int(value) == all_keys.index(key) + 1

    async def test_an_error_reply_fails_only_its_caller(self, cluster_redis: RedisCluster) -> None:
        by_node = await keys_on_every_master(cluster_redis)
        a, b, c = (names[0] for names in by_node.values())
        pipeline = autopipeline_for(cluster_redis)
        await cluster_redis.set(b, "not a number")
        replies = await asyncio.gather(
            pipeline.execute("INCRBY", a, 1),
            pipeline.execute("INCRBY", b, 1),
            pipeline.execute("INCRBY", c, 1),
            return_exceptions=True,
        )
        assert (replies[0], replies[2]) == (1, 1)
        assert "not an integer" in str(replies[1])

    async def test_a_command_without_a_key_goes_through_the_cluster_client(
        self, cluster_redis: RedisCluster
    ) -> None:
        pipeline = autopipeline_for(cluster_redis)
        assert await pipeline.execute("PING") is True


class TestScripts:
    async def test_a_script_runs_on_the_node_of_its_key_on_every_master(
        self, cluster_redis: RedisCluster
    ) -> None:
        by_node = await keys_on_every_master(cluster_redis)
        script = register_script(cluster_redis, INCR_BY_ARGV)
        pipeline = autopipeline_for(cluster_redis)
        keys = [names[0] for names in by_node.values()]
        replies = await asyncio.gather(*(pipeline.script(script, [k], [5]) for k in keys))
        assert replies == [5, 5, 5]

    async def test_noscript_after_script_flush_loads_it_again_on_each_node(
        self, cluster_redis: RedisCluster
    ) -> None:
        by_node = await keys_on_every_master(cluster_redis, per_node=3)
        script = register_script(cluster_redis, INCR_BY_ARGV)
        pipeline = autopipeline_for(cluster_redis)
        keys = [key for names in by_node.values() for key in names]
        await asyncio.gather(*(pipeline.script(script, [k], [1]) for k in keys))
        await cluster_redis.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
        assert not await script_everywhere(cluster_redis, script.sha)

        replies = await asyncio.gather(*(pipeline.script(script, [k], [1]) for k in keys))

        assert replies == [2] * len(keys)
        assert await script_everywhere(cluster_redis, script.sha)

    async def test_a_script_through_a_registered_script_object_works_too(
        self, cluster_redis: RedisCluster
    ) -> None:
        by_node = await keys_on_every_master(cluster_redis)
        script = register_script(cluster_redis, INCR_BY_ARGV)
        for names in by_node.values():
            assert await script(keys=[names[0]], args=[3]) == 3


class TestRedirection:
    async def test_a_moved_slot_is_followed_and_the_map_read_again(
        self, cluster_redis: RedisCluster, redis_cluster: PrivateCluster
    ) -> None:
        by_node = await keys_on_every_master(cluster_redis)
        key = next(iter(by_node.values()))[0]
        pipeline = autopipeline_for(cluster_redis)
        assert await pipeline.execute("INCRBY", key, 1) == 1
        source_node = cluster_redis.get_node_from_key(key)
        assert source_node is not None
        source = redis_cluster.nodes[master_of(redis_cluster, source_node)]
        target = next(n for n in redis_cluster.nodes if n is not source)
        slot = cluster_redis.keyslot(key)

        move_slot(redis_cluster, slot, source.port, target.port)
        try:
            # The client still sends it to the old master, which answers MOVED.
            assert await pipeline.execute("INCRBY", key, 1) == 2
            assert pipeline.redirected == 1  # type: ignore[attr-defined]
            await pipeline.refresh_map()  # type: ignore[attr-defined]  # the MOVED's, under way
            assert moved_to(cluster_redis, key, target.port)
            assert await pipeline.execute("INCRBY", key, 1) == 3
            assert pipeline.redirected == 1  # type: ignore[attr-defined]  # routed directly now
        finally:
            move_slot(redis_cluster, slot, target.port, source.port)

    async def test_a_restarted_master_is_reconnected_to_with_its_data(
        self, cluster_redis: RedisCluster, redis_cluster: PrivateCluster
    ) -> None:
        by_node = await keys_on_every_master(cluster_redis)
        keys = [names[0] for names in by_node.values()]
        pipeline = autopipeline_for(cluster_redis)
        await asyncio.gather(*(pipeline.execute("INCRBY", k, 1) for k in keys))

        await asyncio.to_thread(redis_cluster.restart, redis_cluster.nodes[1])

        replies = await asyncio.gather(*(pipeline.execute("INCRBY", k, 1) for k in keys))
        assert replies == [2, 2, 2]


def move_slot(redis_cluster: PrivateCluster, slot: int, from_port: int, to_port: int) -> None:
    """Reshard one slot, keys and all, as redis-cli --cluster reshard does."""
    nodes = {node.port: node for node in redis_cluster.nodes}
    source, target = nodes[from_port], nodes[to_port]
    target_id = redis_cluster.cli(target, "cluster", "myid").strip()
    source_id = redis_cluster.cli(source, "cluster", "myid").strip()
    redis_cluster.cli(target, "cluster", "setslot", str(slot), "importing", source_id)
    redis_cluster.cli(source, "cluster", "setslot", str(slot), "migrating", target_id)
    while keys := redis_cluster.cli(source, "cluster", "getkeysinslot", str(slot), "100").split():
        redis_cluster.cli(
            source, "migrate", "127.0.0.1", str(to_port), "", "0", "5000", "keys", *keys
        )
    for node in redis_cluster.nodes:
        redis_cluster.cli(node, "cluster", "setslot", str(slot), "node", target_id)
    redis_cluster.wait_until_ok()


async def script_everywhere(cluster: RedisCluster, sha: str) -> bool:
    """Whether every master has the script (and not one of them lacks it)."""
    flags = [
        (await node.execute_command("SCRIPT EXISTS", sha))[0] for node in cluster.get_primaries()
    ]
    assert len(set(flags)) == 1, flags
    return bool(flags[0])


def moved_to(cluster: RedisCluster, key: str, port: int) -> bool:
    node = cluster.get_node_from_key(key)
    return node is not None and int(node.port) == port
