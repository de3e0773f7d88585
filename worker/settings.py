"""The worker's start-up and shutdown, and arq's settings for it. The Procfile runs it as
`python -m worker` (worker/__main__.py), which keeps it running through Redis outages: under
arq on a single Redis (`arq worker.settings.WorkerSettings` works too), under our own small
runner on a Redis Cluster, where arq cannot run (worker/runner.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from arq import cron, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from config import Config
from service import logs
from service.core.clock import Clock, system_clock
from service.core.metrics import Tally
from service.core.partitions import Partitioning
from service.storage import keys
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import (
    RETRY_ON,
    RedisClient,
    autopipeline_for,
    connect,
    retry_policy,
)
from service.storage.deliveries import DeliveryStore
from service.storage.events import EventStore
from service.storage.lanes import Lanes
from service.storage.metrics import MetricsRecorder, MetricsStore
from service.storage.rate_limits import RateLimits
from service.storage.retries import RetrySchedule
from service.storage.status import StatusStore
from service.storage.stream import EventStream
from service.storage.webhooks import WebhookStore
from worker.consumer import Consumer, consumer_name
from worker.deliverer import Deliverer
from worker.http import WebhookClient
from worker.jobs import MAINTENANCE, Periodic, retry_delivery
from worker.retries import RetryRunner
from worker.sender import Sender

logger = logging.getLogger("mailhooks.worker")

# Heroku sends SIGKILL 30 s after SIGTERM: finish in-flight deliveries within this.
SHUTDOWN_GRACE_SECONDS = 20.0
# arq's line as each job starts, finishes or is deferred (`→`, `←`, `↻ … retrying job in`).
ARQ_JOB_PROGRESS = ("→", "←", "retrying job in")


class JobProgressAtDebug(logging.Filter):
    """arq logs every job's start and finish at INFO: with the heartbeat, the lease sweep and
    the trim every few seconds, and a retry job per delivery retried, that was most of the
    worker's log. They go to DEBUG; what a job did that matters it logs itself (a trim that
    removed something, a lease re-queued, a delivery's outcome), and arq's failures (`!`,
    expired jobs) stay as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str):
            return True
        if not any(mark in record.msg for mark in ARQ_JOB_PROGRESS):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def configure_logging(config: Config) -> None:
    """service.logs for the worker, and arq's job progress at DEBUG; idempotent."""
    logs.configure(config)
    arq_worker = logging.getLogger("arq.worker")
    if not any(isinstance(f, JobProgressAtDebug) for f in arq_worker.filters):
        arq_worker.addFilter(JobProgressAtDebug())
    if config.log_level == "DEBUG":
        logging.getLogger("arq").setLevel(logging.DEBUG)


def redis_settings(config: Config) -> RedisSettings:
    settings = RedisSettings.from_dsn(config.redis_url)
    settings.ssl_cert_reqs = config.redis_ssl_cert_reqs
    # A command that meets a dropped connection is retried on a fresh one, so a Redis restart
    # is ridden out; a longer outage ends arq's poll loop, which worker/__main__.py restarts.
    settings.retry = retry_policy()
    settings.retry_on_error = RETRY_ON
    return settings


@dataclass(frozen=True, slots=True)
class Stores:
    """The worker's stores over one Redis client, sharing one AutoPipeline: the claims,
    outcomes and acknowledgements of one loop turn travel in one round trip."""

    pipeline: AutoPipeline
    webhooks: WebhookStore
    deliveries: DeliveryStore
    events: EventStore
    stream: EventStream  # partition 0's: the only one of a single Redis
    streams: tuple[EventStream, ...]  # one per partition (keys.partitioning())
    lanes: Lanes
    status: StatusStore
    rates: RateLimits
    retries: RetrySchedule

    @classmethod
    def create(cls, redis: RedisClient, config: Config) -> Stores:
        pipeline = autopipeline_for(redis)
        streams = tuple(
            EventStream(redis, pipeline, partition=partition)
            for partition in keys.partitioning().all()
        )
        return cls(
            pipeline=pipeline,
            webhooks=WebhookStore(redis, pipeline),
            deliveries=DeliveryStore(redis, pipeline),
            events=EventStore(
                redis,
                maxlen=config.events_maxlen,
                dedup_ttl_seconds=config.dedup_ttl_seconds,
                pipeline=pipeline,
            ),
            stream=streams[0],
            streams=streams,
            lanes=Lanes(redis, pipeline),
            status=StatusStore(redis),
            rates=RateLimits(redis, pipeline),
            retries=RetrySchedule(redis, pipeline),
        )


def build_deliverer(
    stores: Stores,
    *,
    http: WebhookClient,
    config: Config,
    clock: Clock = system_clock,
    rng: random.Random | None = None,
    metrics: Tally | None = None,
) -> Deliverer:
    sender = Sender(
        http, timeout=config.delivery_timeout, allow_private_urls=config.allow_private_urls
    )
    return Deliverer(
        webhooks=stores.webhooks,
        deliveries=stores.deliveries,
        events=stores.events,
        rates=stores.rates,
        retries=stores.retries,
        sender=sender,
        config=config,
        clock=clock,
        rng=rng,
        metrics=metrics,
    )


async def startup(ctx: dict[str, Any]) -> None:
    config: Config = ctx["config"]
    configure_logging(config)  # again, for `arq worker.settings.WorkerSettings`
    logger.info("worker starting with %r", config)
    keys.use(Partitioning(config.event_partitions))
    ctx["http"] = WebhookClient(config)
    # The delivery path's own client (the web process's kind); arq's pool is arq's.
    ctx["store_redis"] = store_redis = connect(config)
    stores = Stores.create(store_redis, config)
    ctx["stores"] = stores
    # Counted in memory, flushed to Redis once a second: GET /metrics on web shows them. A
    # run cut short by a Redis outage (python -m worker runs another) left its counts here.
    left: MetricsRecorder | None = ctx.pop("metrics", None)
    tally = left.tally if left is not None else Tally(per_account=config.metrics_per_account)
    ctx["metrics"] = metrics = MetricsRecorder(MetricsStore(store_redis), tally)
    metrics.start()
    deliverer = build_deliverer(stores, http=ctx["http"], config=config, metrics=metrics.tally)
    ctx["deliverer"] = deliverer
    for stream in stores.streams:  # every partition's: trimming waits for a group
        await stream.ensure_group()
    consumer = Consumer(
        {stream.partition: stream for stream in stores.streams},
        deliverer,
        name=consumer_name(),
        reclaim_idle_ms=2 * deliverer.lease_ms,
        lanes=stores.lanes,
        account_concurrency=config.account_concurrency,
        # Just under the attempts at which one endpoint counts as saturated (worker.limiter):
        # an account with one slow endpoint settles there, handing nothing off.
        min_account_window=max(1, 2 * config.endpoint_concurrency - 1),
        dead_letter_after=config.dead_letter_after,
    )
    ctx["consumer"] = consumer
    ctx["consumer_task"] = asyncio.create_task(consumer.run(), name="consumer")
    # Attempts scheduled for later (service.storage.retries), taken in every partition.
    # Hidden for a lease while they run: a worker that dies leaves them due a lease later.
    retries = RetryRunner(
        stores.retries,
        deliverer,
        partitions=keys.partitioning().all(),
        visibility_ms=deliverer.lease_ms,
    )
    ctx["retry_runner"] = retries
    retries.start()


async def shutdown(ctx: dict[str, Any]) -> None:
    # The consumer and the retry runner finish what they started together, in one grace.
    stopping = []
    if "retry_runner" in ctx:
        stopping.append(ctx.pop("retry_runner").stop(grace_seconds=SHUTDOWN_GRACE_SECONDS))
    if "consumer" in ctx:
        stopping.append(ctx["consumer"].stop(grace_seconds=SHUTDOWN_GRACE_SECONDS))
    await asyncio.gather(*stopping)
    if "consumer" in ctx:
        # Interrupt its blocking read: entries it was being handed stay pending in the group
        # and are reclaimed by the next consumer, so nothing is lost.
        task: asyncio.Task[None] = ctx["consumer_task"]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if "metrics" in ctx:
        await ctx.pop("metrics").close()  # the last second's counts
    await close_clients(ctx)


async def close_clients(ctx: dict[str, Any]) -> None:
    """Close the clients startup made; idempotent. Also called by python -m worker after an
    outage, when arq's close() fails before it gets to on_shutdown."""
    if "http" in ctx:
        await ctx.pop("http").aclose()
    if "store_redis" in ctx:
        await ctx.pop("store_redis").aclose()


CONFIG = Config.from_env()  # read once, when the worker process starts


def arq_cron(periodic: Periodic) -> CronJob:
    """A maintenance job as arq's cron job, at the same times."""
    job = cast(WorkerCoroutine, periodic.job)  # arq's type takes any further arguments
    if periodic.every < 60:
        seconds = set(range(periodic.offset, 60, periodic.every))
        return cron(job, second=seconds, run_at_startup=periodic.at_startup)
    minute, second = divmod(periodic.offset, 60)
    return cron(job, minute=minute, second=second, run_at_startup=periodic.at_startup)


class WorkerSettings:
    # Retries are no arq jobs (worker/retries.py); this one only moves those that the version
    # before enqueued into the retry set. Remove it in the release after.
    functions = [func(retry_delivery, max_tries=5)]
    cron_jobs = [arq_cron(periodic) for periodic in MAINTENANCE]
    redis_settings = redis_settings(CONFIG)
    ctx = {"config": CONFIG}
    on_startup = startup
    on_shutdown = shutdown
    # msgpack, never pickle from Redis into a process (the old retry jobs were encoded so).
    job_serializer = msgspec.msgpack.encode
    job_deserializer = msgspec.msgpack.decode
    keep_result = 0
    poll_delay = 0.2
