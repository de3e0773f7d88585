"""The customer portal's state in Redis: the links already opened, and the sessions they
opened (docs/portal.md). Key names live in `service.storage.keys`."""

from __future__ import annotations

from dataclasses import dataclass

from service.storage import keys
from service.storage.connection import RedisClient
from service.storage.transactions import transaction


@dataclass(frozen=True, slots=True)
class PortalSession:
    account: str
    csrf: str  # the synchronizer token every form of the session carries
    expires_at: int  # unix seconds

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> PortalSession | None:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        if not text.get("account") or not text.get("csrf"):
            return None
        return cls(account=text["account"], csrf=text["csrf"], expires_at=int(text["expires_at"]))


class PortalStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def use_link(self, link_id: str, *, ttl_seconds: int) -> bool:
        """Mark a link as opened: True the first time, False ever after (until it would
        have expired anyway, `ttl_seconds` from now)."""
        return bool(
            await self._redis.set(keys.portal_link(link_id), "1", nx=True, ex=max(ttl_seconds, 1))
        )

    async def open_session(
        self, digest: str, session: PortalSession, *, created_at: str, ttl_seconds: int
    ) -> None:
        key = keys.portal_session(digest)
        fields = {
            "account": session.account,
            "csrf": session.csrf,
            "created_at": created_at,
            "expires_at": str(session.expires_at),
        }
        async with transaction(self._redis, key) as tx:
            tx.hset(key, mapping=fields)
            tx.expire(key, ttl_seconds)
            await tx.execute()

    async def session(self, digest: str) -> PortalSession | None:
        fields = await self._redis.hgetall(keys.portal_session(digest))  # type: ignore[misc]
        return PortalSession.from_hash(fields) if fields else None

    async def close_session(self, digest: str) -> None:
        await self._redis.delete(keys.portal_session(digest))
