"""Idempotency-Key records: one string per key in use, claimed with SET NX by the request that
runs, then holding its sealed response for replay (service.core.idempotency decides what the
values are; key names in service.storage.keys)."""

from __future__ import annotations

from service.storage import keys, scripts
from service.storage.connection import RedisClient, register_script

_SETTLE = scripts.load("settle_idempotency")


def settle_call(*, record: str, marker: bytes, response: bytes, ttl_ms: int) -> scripts.ScriptArgs:
    """KEYS and ARGV of settle_idempotency.lua: `response` b"" releases the key."""
    return [record], [marker, response, ttl_ms]


class IdempotencyStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._settle = register_script(redis, _SETTLE.source)

    async def claim(self, digest: str, marker: bytes, *, ttl_ms: int) -> bytes | None:
        """None if the key was free and now holds `marker` (the caller runs the request);
        else what holds it: another request's marker or a kept response. A record that
        expires between the two reads is claimed on the caller's next try."""
        record = keys.idempotency(digest)
        if await self._redis.set(record, marker, nx=True, px=ttl_ms):
            return None
        found: bytes | None = await self._redis.get(record)
        return found if found is not None else b""

    async def settle(self, digest: str, marker: bytes, response: bytes, *, ttl_ms: int) -> bool:
        """Keep `response` for `ttl_ms` (b"": release the key), if `marker` still holds it."""
        script_keys, args = settle_call(
            record=keys.idempotency(digest), marker=marker, response=response, ttl_ms=ttl_ms
        )
        return bool(await self._settle(keys=script_keys, args=args))
