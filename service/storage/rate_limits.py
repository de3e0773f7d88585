"""Per-webhook delivery rate limits, shared by every worker process: each rate-limited
webhook's limiter state is one Redis key, changed by one script (rate_slot.lua), so that
several worker processes (dynos) together stay within the webhook's rate.

Only webhooks with a `rate_limit` are looked up here; the others cost nothing.
"""

from __future__ import annotations

from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script

_RATE_SLOT = scripts.load("rate_slot")


def rate_slot_call(*, state: str, per_second: int, burst: int) -> scripts.ScriptArgs:
    """KEYS and ARGV of rate_slot.lua."""
    return [state], [per_second, burst]


class RateLimits:
    def __init__(self, redis: RedisClient, pipeline: AutoPipeline | None = None) -> None:
        # Slots taken by concurrent attempts travel with the worker's other commands.
        self._pipeline = pipeline or autopipeline_for(redis)
        self._script = register_script(redis, _RATE_SLOT.source)

    async def take_slot(self, webhook_id: int, *, per_second: int, burst: int) -> float:
        """Take the webhook's next delivery slot; seconds until it (0.0: now). The slot is
        the caller's: waiting for it, it must not take another."""
        script_keys, args = rate_slot_call(
            state=keys.webhook_rate(webhook_id), per_second=per_second, burst=burst
        )
        wait_us = await self._pipeline.script(self._script, keys=script_keys, args=args)
        return int(wait_us) / 1_000_000
