"""The worker's process host on a Redis Cluster, in place of arq's: the same start-up and
shutdown (worker/settings.py), and the maintenance jobs at the same times (worker/jobs.py
MAINTENANCE).

arq cannot run on a cluster at all: even its cron jobs are enqueued through a WATCH/MULTI
over two of its keys (the job and the queue), which a cluster refuses across slots. What
arq did for us besides retries (now worker/retries.py) is this little: run the start-up,
call a few functions at fixed times, stop gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions

from worker.jobs import Periodic
from worker.settings import shutdown, startup

logger = logging.getLogger("mailhooks.worker")

# What ends a run when Redis goes away: python -m worker runs it again (as it does arq's
# loop). WatchError too: redis-py raises it from a WATCHed pipeline whose connection dropped
# or met a Redis still loading its AOF (arq's job bookkeeping; make soak saw it end the
# process at a Redis restart); it is no ConnectionError.
OUTAGE_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.WatchError,
    redis.exceptions.ClusterDownError,
    OSError,
)


async def serve(
    ctx: dict[str, Any],
    maintenance: Sequence[Periodic],
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Start the worker, run `maintenance` at its times until SIGTERM or SIGINT (or `stop`),
    then shut down gracefully. A Redis outage met by a maintenance job is raised instead, so
    that python -m worker starts it all again; other failures are logged, as arq logs a
    failed job, and the job runs again at its next time."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await startup(ctx)
        jobs = [asyncio.create_task(_every(ctx, p, clock)) for p in maintenance]
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([*jobs, stopped], return_when=asyncio.FIRST_COMPLETED)
        for task in [*jobs, stopped]:
            task.cancel()
        await asyncio.gather(*jobs, stopped, return_exceptions=True)
        for job in jobs:
            if not job.cancelled() and (error := job.exception()) is not None:
                raise error  # an outage: no graceful shutdown, as after arq's loop ends
        logger.info("worker stopping")
        await shutdown(ctx)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _every(ctx: dict[str, Any], periodic: Periodic, clock: Callable[[], float]) -> None:
    name = periodic.job.__name__
    if periodic.at_startup:
        await _run(ctx, periodic, name)
    while True:
        now = clock()
        await asyncio.sleep(periodic.next_run(now) - now)
        await _run(ctx, periodic, name)


async def _run(ctx: dict[str, Any], periodic: Periodic, name: str) -> None:
    try:
        await periodic.job(ctx)
    except OUTAGE_ERRORS:
        raise
    except Exception:
        logger.exception("maintenance job %s failed; it runs again at its next time", name)
