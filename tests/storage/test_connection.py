"""Connecting from REDIS_URL, including rediss:// to a server with a self-signed certificate
(as Heroku Redis has), for both the web process's client and the worker's arq pool."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions
from arq.connections import create_pool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import RedisCluster

from config import Config
from devtools.redis_cluster import PrivateCluster
from devtools.redis_server import PrivateRedis
from service.storage.connection import HiredisPacking, connect, register_script
from worker.settings import redis_settings

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "redis.crt", directory / "redis.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_redis(redis_server: PrivateRedis, tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path / "data", durable=False, tls=self_signed(tmp_path)) as server:
        yield server


async def test_rediss_with_self_signed_certificate(tls_redis: PrivateRedis) -> None:
    config = Config.from_env({"REDIS_URL": tls_redis.url})
    assert config.redis_url.startswith("rediss://")
    client = connect(config)
    assert isinstance(client.connection_pool.connection_class, type)
    assert issubclass(client.connection_pool.connection_class, HiredisPacking)
    assert await client.ping() is True
    await client.aclose()

    pool = await create_pool(redis_settings(config))
    assert await pool.ping() is True
    await pool.aclose()


async def test_rediss_with_required_verification_refuses_self_signed(
    tls_redis: PrivateRedis,
) -> None:
    config = Config.from_env({"REDIS_URL": tls_redis.url, "REDIS_SSL_CERT_REQS": "required"})
    client = connect(config)
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        await client.ping()
    await client.aclose()


async def test_plain_redis_url(redis_server: PrivateRedis) -> None:
    client = connect(Config(redis_url=redis_server.url))
    assert await client.ping() is True
    await client.aclose()


async def test_commands_packed_by_hiredis_mean_what_redis_py_would_send(
    redis_server: PrivateRedis,
) -> None:
    client = connect(Config(redis_url=redis_server.url))
    assert issubclass(client.connection_pool.connection_class, HiredisPacking)
    await client.flushall()
    # str (non-ASCII too), bytes, int, float; a command name of two words.
    await client.hset("h", mapping={"s": "żółw", "b": b"\x00\xff", "i": 42, "f": 1.5})
    assert await client.hgetall("h") == {
        b"s": "żółw".encode(),
        b"b": b"\x00\xff",
        b"i": b"42",
        b"f": b"1.5",
    }
    assert await client.execute_command("CONFIG GET", "maxmemory") == {"maxmemory": "0"}
    with pytest.raises(redis.exceptions.DataError):
        await client.set("k", None)  # type: ignore[arg-type]
    await client.aclose()


class TestCluster:
    async def test_any_nodes_url_gives_a_client_of_the_whole_cluster(
        self, redis_cluster: PrivateCluster
    ) -> None:
        for node in redis_cluster.nodes:
            client = connect(Config(redis_url=node.url, redis_cluster=True))
            assert isinstance(client, RedisCluster)
            assert await client.ping() is True
            assert {int(n.port) for n in client.get_primaries()} == {
                n.port for n in redis_cluster.nodes
            }
            await client.aclose()

    async def test_every_nodes_connections_pack_with_hiredis(
        self, cluster_redis: RedisCluster
    ) -> None:
        await cluster_redis.initialize()
        assert all(
            issubclass(node.connection_class, HiredisPacking) for node in cluster_redis.get_nodes()
        )
        # Keys on each master (each its own slot), a two-word command name.
        for i in range(20):
            await cluster_redis.hset(f"h{i}", mapping={"s": "żółw", "i": i})
            assert await cluster_redis.hgetall(f"h{i}") == {b"s": "żółw".encode(), b"i": b"%d" % i}
        assert await cluster_redis.execute_command("CONFIG GET", "maxmemory") == {"maxmemory": "0"}

    async def test_a_blocking_read_goes_to_its_streams_node(
        self, cluster_redis: RedisCluster
    ) -> None:
        streams = [f"mh:test:stream:{i}" for i in range(6)]  # over every master
        assert len({cluster_redis.get_node_from_key(s).name for s in streams}) == 3  # type: ignore[union-attr]
        for stream in streams:
            await cluster_redis.xgroup_create(stream, "g", id="0", mkstream=True)
            await cluster_redis.xadd(stream, {"n": stream})
            read = await cluster_redis.xreadgroup("g", "c", {stream: ">"}, count=1, block=100)
            assert read[0][1][0][1] == {b"n": stream.encode()}

    async def test_register_script_works_on_a_cluster_client(
        self, cluster_redis: RedisCluster
    ) -> None:
        script = register_script(cluster_redis, "return redis.call('SET', KEYS[1], ARGV[1])")
        for i in range(10):  # keys on every master; NOSCRIPT on each loads it there
            assert await script(keys=[f"k{i}"], args=["v"]) == b"OK"
