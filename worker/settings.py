"""The arq worker, as the Procfile runs it: `arq worker.settings.WorkerSettings`."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from arq import cron
from arq.connections import RedisSettings

from config import Config
from worker.heartbeat import HEARTBEAT_SECONDS, beat

logger = logging.getLogger("mailhooks.worker")


def redis_settings(config: Config) -> RedisSettings:
    settings = RedisSettings.from_dsn(config.redis_url)
    settings.ssl_cert_reqs = config.redis_ssl_cert_reqs
    return settings


async def startup(ctx: dict[str, Any]) -> None:
    logger.info("worker starting with %r", ctx["config"])


CONFIG = Config.from_env()  # read once, when the worker process starts


class WorkerSettings:
    functions: list[Any] = []
    cron_jobs = [
        cron(beat, second=set(range(0, 60, HEARTBEAT_SECONDS)), run_at_startup=True),
    ]
    redis_settings = redis_settings(CONFIG)
    ctx = {"config": CONFIG}
    on_startup = startup
    # Job arguments and results as msgpack via msgspec: no pickle from Redis into the worker.
    job_serializer = msgspec.msgpack.encode
    job_deserializer = msgspec.msgpack.decode
