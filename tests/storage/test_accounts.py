"""Accounts in Redis: the account's events index follows the stream through trims, entries
stored before accounts are the default account's, and an account's deletion leaves nothing."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT, api_key_digest
from service.core.ids import entry_member
from service.storage import keys
from service.storage.accounts import AccountStore
from service.storage.events import EventFilter, EventStore
from service.storage.trimming import EventTrimmer
from tests.conftest import FIXED_NOW
from tests.partitioned import assert_tagged, in_partition
from tests.storage.test_events import consume, event, make_group

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ACME = "acc_acme"


async def test_an_accounts_index_follows_the_stream_through_trims(real_redis: Redis) -> None:
    store = EventStore(real_redis, maxlen=10**6, dedup_ttl_seconds=60)
    await store.append("sendgrid", [event(n, account_id=ACME) for n in range(300)])
    await store.append("sendgrid", [event(n) for n in range(300, 400)])  # the default's
    listed, _ = await store.recent(EventFilter(account=ACME), before=None, limit=1000)
    assert len(listed) == 300
    assert {e.account_id for e in listed} == {ACME}
    assert await real_redis.zcard(keys.events_by_account(ACME)) == 300
    assert await real_redis.exists(keys.events_by_account(DEFAULT_ACCOUNT)) == 0
    await make_group(real_redis)
    await consume(real_redis)
    await EventTrimmer(real_redis, maxlen=1000).trim()  # under maxlen: nothing goes
    assert await real_redis.zcard(keys.events_by_account(ACME)) == 300
    await EventTrimmer(real_redis, maxlen=150).trim(min_excess=0)
    left = {entry_member(raw.decode()) for raw, _ in await real_redis.xrange(keys.EVENTS_STREAM)}
    members = {m.decode() for m in await real_redis.zrange(keys.events_by_account(ACME), 0, -1)}
    assert members <= left
    assert len(members) == len(left) - 100  # every Acme entry kept is still indexed


async def test_an_entry_from_before_accounts_is_the_default_accounts(real_redis: Redis) -> None:
    payload = b'{"type":"email.open","email_id":"m","occurred_at":"t","provider":"generic"}'
    await real_redis.xadd(keys.EVENTS_STREAM, {"e": payload})
    store = EventStore(real_redis, maxlen=10**6, dedup_ttl_seconds=60)
    [found], _ = await store.recent(EventFilter(), before=None, limit=10)
    assert found.account_id == DEFAULT_ACCOUNT
    none, _ = await store.recent(EventFilter(account=ACME), before=None, limit=10)
    assert none == []


async def test_unrouted_events_are_stored_and_counted(real_redis: Redis) -> None:
    store = EventStore(real_redis, maxlen=10**6, dedup_ttl_seconds=60)
    await store.append("generic", [event(1, account_id=None)])  # type: ignore[arg-type]
    [entry] = await real_redis.xrange(keys.EVENTS_STREAM)
    assert entry[1][b"a"] == b""
    assert await real_redis.hget(keys.INBOUND_COUNTS, "generic:unrouted") == b"1"
    [found], _ = await store.recent(EventFilter(account=None), before=None, limit=10)
    assert found.account_id is None


async def test_registrations_and_keys_go_with_the_account(real_redis: Redis) -> None:
    accounts = AccountStore(real_redis)
    await accounts.create(ACME, "Acme", now="t")
    await accounts.add_key(ACME, key_id="key_1", digest="d" * 64, prefix="mh_x", now="t")
    assert await accounts.register_emails(ACME, ["m1", "m2"], ttl_ms=60_000, now_ms=0) == []
    assert await accounts.owners(["m1", "m3"]) == [ACME, None]
    assert await accounts.register_emails("acc_other", ["m1"], ttl_ms=60_000, now_ms=0) == ["m1"]
    existing, owners = await accounts.lookup([ACME, "acc_other"], ["m2"])
    assert existing == {ACME}
    assert owners == [ACME]
    assert await accounts.start_delete(ACME)
    assert await accounts.existing([ACME]) == set()  # gone for routing from the first step
    await accounts.finish_delete(ACME)
    assert await accounts.key_by_digest("d" * 64) is None
    assert await accounts.owners(["m1", "m2"]) == [None, None]
    assert [k async for k in real_redis.scan_iter(match="*")] == []
    assert not await accounts.start_delete(ACME)


class TestPartitioned:
    """With 16 partitions, on a Redis that refuses any script, MULTI or multi-key command
    over two slots (CROSSSLOT)."""

    async def test_accounts_keys_and_emails(self, partitioned_redis: Redis) -> None:
        partitions = keys.partitioning()
        other = "acc_globex"
        assert partitions.of_account(ACME) != partitions.of_account(other)
        accounts = AccountStore(partitioned_redis)
        await accounts.create(ACME, "Acme", now="t")
        await accounts.create(other, "Globex", now="t")
        await accounts.ensure_default(now="t")
        listed, _ = await accounts.list(after=None, limit=10)
        assert [a.id for a in listed] == sorted([ACME, other, DEFAULT_ACCOUNT])
        renamed = await accounts.rename(ACME, "Acme Corp", now="t2")
        assert renamed is not None
        assert renamed.name == "Acme Corp"

        issued = await accounts.issue_key(ACME, now=FIXED_NOW)
        found = await accounts.key_by_digest(api_key_digest(issued.key))
        assert found is not None
        assert found.account == ACME
        assert [k.id for k in await accounts.keys(ACME)] == [issued.id]

        assert await accounts.register_emails(ACME, ["m1", "m2"], ttl_ms=60_000, now_ms=0) == []
        assert await accounts.register_emails(other, ["m1", "m3"], ttl_ms=60_000, now_ms=0) == [
            "m1"
        ]
        assert await accounts.owners(["m1", "m2", "m3", "m4"]) == [ACME, ACME, other, None]
        existing, owners = await accounts.lookup([ACME, other, "acc_none"], ["m3", "m2", "m4"])
        assert existing == {ACME, other}
        assert owners == [other, ACME, None]

        names = await assert_tagged(partitioned_redis)
        acme = in_partition(names, partitions.of_account(ACME))
        assert {keys.account(ACME), keys.account_keys(ACME), keys.account_emails(ACME)} <= acme
        assert keys.account(DEFAULT_ACCOUNT) in in_partition(
            names, partitions.of_account(DEFAULT_ACCOUNT)
        )

        assert await accounts.revoke(ACME, issued.id)
        assert await accounts.key_by_digest(api_key_digest(issued.key)) is None
        assert await accounts.keys(ACME) == []

        await accounts.issue_key(ACME, now=FIXED_NOW)
        assert await accounts.start_delete(ACME)
        assert await accounts.existing([ACME, other]) == {other}
        await accounts.finish_delete(ACME)
        assert await accounts.owners(["m1", "m2", "m3"]) == [None, None, other]
        left = await assert_tagged(partitioned_redis)
        assert not [name for name in left if ACME in name]
        assert not [name for name in left if name.startswith("mh:api-key:")]
        assert [a.id for a in (await accounts.list(after=None, limit=10))[0]] == sorted(
            [other, DEFAULT_ACCOUNT]
        )
