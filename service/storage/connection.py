"""Connecting to Redis from REDIS_URL (redis://, rediss:// with Heroku's self-signed certs)."""

from __future__ import annotations

from typing import Any

import hiredis
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from config import Config

# A command that meets a dropped connection (Redis restarted, a failover) is retried on a
# fresh one for up to about two seconds before the request answers 503. Our writes are safe
# to repeat: appends are de-duplicated, webhook writes set the same fields again.
RETRY_ON: list[type[Exception]] = [
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
]


def retry_policy(retries: int = 5) -> Retry:
    """Up to `retries` tries, 50 ms apart at first, doubling to 1 s between tries."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries)


class HiredisPacking(AbstractConnection):
    """Packs commands with hiredis, in C. redis-py's asyncio connection packs them in Python
    (its sync one uses hiredis): with scripts of twenty-odd arguments per delivery that was
    about 8 % of the worker's CPU (docs/performance.md)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name given with spaces ("CONFIG GET") is several words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis.exceptions.DataError(str(exc)) from None


class PackingConnection(HiredisPacking, Connection):
    pass


class PackingSSLConnection(HiredisPacking, SSLConnection):
    pass


class PackingUnixConnection(HiredisPacking, UnixDomainSocketConnection):
    pass


PACKING = {
    Connection: PackingConnection,
    SSLConnection: PackingSSLConnection,
    UnixDomainSocketConnection: PackingUnixConnection,
}


def connect(config: Config) -> Redis:
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "retry": retry_policy(),
        "retry_on_error": RETRY_ON,
    }
    if config.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = config.redis_ssl_cert_reqs
    client: Redis = Redis.from_url(config.redis_url, **options)
    pool = client.connection_pool
    pool.connection_class = PACKING.get(pool.connection_class, pool.connection_class)
    return client
