"""Connecting to Redis from REDIS_URL (redis://, rediss:// with Heroku's self-signed certs)."""

from __future__ import annotations

from redis.asyncio import Redis

from config import Config


def connect(config: Config) -> Redis:
    if config.redis_url.startswith("rediss://"):
        client: Redis = Redis.from_url(
            config.redis_url,
            health_check_interval=30,
            socket_connect_timeout=5,
            ssl_cert_reqs=config.redis_ssl_cert_reqs,
        )
    else:
        client = Redis.from_url(
            config.redis_url, health_check_interval=30, socket_connect_timeout=5
        )
    return client
