"""The portal's links and sessions on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.storage import keys
from service.storage.portal import PortalSession, PortalStore

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


class TestLinks:
    async def test_a_link_is_used_once(self, real_redis: Redis) -> None:
        store = PortalStore(real_redis)
        assert await store.use_link("link-1", ttl_seconds=600)
        assert not await store.use_link("link-1", ttl_seconds=600)
        assert await store.use_link("link-2", ttl_seconds=600)

    async def test_remembered_until_the_link_would_expire(self, real_redis: Redis) -> None:
        store = PortalStore(real_redis)
        await store.use_link("link-1", ttl_seconds=120)
        assert 110 < await real_redis.ttl(keys.portal_link("link-1")) <= 120
        await store.use_link("link-2", ttl_seconds=0)  # at its last second: still a TTL
        assert await real_redis.ttl(keys.portal_link("link-2")) == 1


class TestSessions:
    async def test_open_read_close(self, real_redis: Redis) -> None:
        store = PortalStore(real_redis)
        session = PortalSession(account="acc_1", csrf="token", expires_at=1_800_000_000)
        await store.open_session("d1", session, created_at="2026-03-03T10:00:00Z", ttl_seconds=60)
        assert await store.session("d1") == session
        assert 50 < await real_redis.ttl(keys.portal_session("d1")) <= 60
        await store.close_session("d1")
        assert await store.session("d1") is None

    async def test_no_such_session(self, real_redis: Redis) -> None:
        assert await PortalStore(real_redis).session("nothing") is None
