"""`python -m worker`, the Procfile's worker: arq's worker on a single Redis, our own small
runner on a Redis Cluster (worker/runner.py: arq cannot run there), either started again in
this same process if Redis goes away for longer than a command's retries.

arq's poll loop (or a maintenance job of ours) ends at the first Redis error it cannot retry.
All state lives in Redis, so the worker is simply run again once Redis answers; the process
(and its place in the platform's process list) stays. A signal (SIGTERM, Ctrl-C) still stops
it for good.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import Any

import uvloop
from arq.worker import Worker, get_kwargs

from service import logs
from worker import runner
from worker.jobs import MAINTENANCE
from worker.runner import OUTAGE_ERRORS
from worker.settings import CONFIG, WorkerSettings, close_clients, configure_logging

logger = logging.getLogger("mailhooks.worker")

__all__ = ["OUTAGE_ERRORS", "main"]


class GracefulWorker(Worker):
    """arq's Worker, stopping gracefully even with a job running at the signal.

    arq's signal handler cancels the running jobs (a maintenance job, say), then its close()
    gathers them: the first cancelled one raised CancelledError out of close() before
    on_shutdown ran, so the consumer's in-flight deliveries were cut off rather than
    finished, and the process exited 1 with a traceback on a plain SIGTERM (a test caught
    it, once in a suite run)."""

    async def close(self) -> None:
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()  # ended, however: nothing left for arq's close() to gather
        await super().close()


def run_once() -> None:
    # uvloop (installed with uvicorn[standard]): Redis and HTTP round trips cost less CPU.
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    # On a cluster, our runner over the same dict on every run, as arq's own: a run cut
    # short leaves its metrics there for the next.
    worker = None if CONFIG.redis_cluster else GracefulWorker(**get_kwargs(WorkerSettings))  # type: ignore[arg-type]
    ctx: dict[str, Any] = WorkerSettings.ctx if worker is None else worker.ctx
    try:
        if worker is None:
            loop.run_until_complete(runner.serve(ctx, MAINTENANCE))
        else:
            worker.run()
    finally:
        # After an outage the worker could not shut down: cancel what it left behind, and
        # close the clients its shutdown never reached.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        try:
            loop.run_until_complete(close_clients(ctx))
        except Exception as exc:  # cleanup must not turn an outage fatal
            logger.warning("closing clients after the worker stopped: %r", exc)
        loop.close()


def main() -> int:
    configure_logging(CONFIG)  # before arq's first line
    logs.lean_records()
    # Everything imported so far is there for good: keep full collections from walking it
    # (as the web process does after start-up; docs/performance.md).
    gc.collect()
    gc.freeze()
    # Each delivery allocates a few hundred short-lived objects (requests, futures,
    # headers) and the default gen-0 threshold of 700 collects every couple of deliveries,
    # walking the ~1,000 suspended entry tasks each time a collection reaches gen 1: fewer,
    # larger collections cut ~5 % of the worker's CPU (A/B in docs/performance.md). Cycles
    # are still collected, a little later.
    gc.set_threshold(20_000, 20, 100)
    backoff = 1.0
    while True:
        try:
            run_once()
            return 0  # stopped by a signal
        except OUTAGE_ERRORS as exc:
            logger.warning(
                "redis unavailable (%s); running the worker again in %.0fs", exc, backoff
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


if __name__ == "__main__":
    sys.exit(main())
