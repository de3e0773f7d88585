"""The worker's heartbeat: proof, visible in Redis, that a worker is running."""

from __future__ import annotations

from typing import Any

from service import keys
from service.clock import format_timestamp, system_clock

HEARTBEAT_SECONDS = 15


async def beat(ctx: dict[str, Any]) -> None:
    # Expires after a few missed beats, so a stale value means no worker is alive.
    await ctx["redis"].set(
        keys.WORKER_HEARTBEAT, format_timestamp(system_clock()), ex=HEARTBEAT_SECONDS * 4
    )
