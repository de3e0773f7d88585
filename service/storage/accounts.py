"""Accounts, their API keys and their email registrations in Redis.

An account is a hash and a member of the account index; each API key a hash found by the
key's SHA-256 (the key itself is never stored); each registered email id a string naming its
account, with a time to live. Key names live in `service.storage.keys`.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.core.accounts import (
    DEFAULT_ACCOUNT,
    DEFAULT_ACCOUNT_NAME,
    api_key_digest,
    new_account_id,
    new_api_key,
    new_key_id,
    shown_prefix,
)
from service.core.ids import epoch_ms, format_timestamp
from service.core.models import ApiKeyCreated
from service.storage import keys, scripts, suppressions
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script
from service.storage.transactions import transaction

_CLAIM_EMAIL = scripts.load("claim_email")
_FORGET_EMAIL = scripts.load("forget_email")
# Deleting an account removes this many of its email registrations per round trip.
FORGET_BATCH = 500


def claim_email_call(*, owner: str, account: str, ttl_ms: int) -> scripts.ScriptArgs:
    """KEYS and ARGV of claim_email.lua."""
    return [owner], [account, ttl_ms]


def forget_email_call(*, owner: str, account: str) -> scripts.ScriptArgs:
    """KEYS and ARGV of forget_email.lua."""
    return [owner], [account]


def _spread_over_slots() -> bool:
    """Whether keys are named for a cluster (several partitions): then email owner keys,
    found by email id alone, lie in many slots, and one command may not name several."""
    return keys.partitioning().count > 1


def email_digest(email_id: str) -> str:
    """A short, fixed-length stand-in for an email id in key names (they may be 998 long)."""
    digest = hashlib.sha256(email_id.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class StoredAccount:
    id: str
    name: str
    created_at: str
    updated_at: str

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> StoredAccount | None:
        """The account, or None for a hash that is being deleted or only a remnant."""
        text = {k.decode(): v.decode() for k, v in fields.items()}
        if "id" not in text or text.get("deleting") == "1":
            return None
        return cls(
            id=text["id"],
            name=text.get("name", ""),
            created_at=text.get("created_at", ""),
            updated_at=text.get("updated_at", text.get("created_at", "")),
        )


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    account: str
    prefix: str
    created_at: str
    last_used_at: str | None = None

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> StoredKey | None:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        if "id" not in text or "account" not in text:
            return None
        return cls(
            id=text["id"],
            account=text["account"],
            prefix=text.get("prefix", ""),
            created_at=text.get("created_at", ""),
            last_used_at=text.get("last_used_at") or None,
        )


class AccountStore:
    def __init__(self, redis: RedisClient, pipeline: AutoPipeline | None = None) -> None:
        self._redis = redis
        # Routing lookups travel with the ingest's appends (service.http.routing).
        self._pipeline = pipeline or autopipeline_for(redis)
        self._claim_email = register_script(redis, _CLAIM_EMAIL.source)
        self._forget_email = register_script(redis, _FORGET_EMAIL.source)

    # Accounts

    async def create(self, account_id: str, name: str, *, now: str) -> StoredAccount:
        fields = {"id": account_id, "name": name, "created_at": now, "updated_at": now}
        # The index and the hash are in different slots when partitioned, so not one MULTI:
        # the index first, as a listing skips an id with no hash (a crash in between).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.ACCOUNT_INDEX, {account_id: 0})
            pipe.hset(keys.account(account_id), mapping=fields)
            await pipe.execute()
        return StoredAccount(account_id, name, now, now)

    async def create_new(self, name: str, *, now: datetime) -> StoredAccount:
        """A new account under a new id (the accounts API and the CLI)."""
        account_id = new_account_id(epoch_ms(now), secrets.token_bytes(7))
        return await self.create(account_id, name, now=format_timestamp(now))

    async def ensure_default(self, *, now: str) -> None:
        """Create the built-in default account unless it exists (single-account mode; every
        web process does it at start, so each field is set only if missing)."""
        key = keys.account(DEFAULT_ACCOUNT)
        # As in `create`: the index (another slot when partitioned) first, then the hash.
        await self._redis.zadd(keys.ACCOUNT_INDEX, {DEFAULT_ACCOUNT: 0})
        async with transaction(self._redis, key) as tx:
            tx.hsetnx(key, "id", DEFAULT_ACCOUNT)
            tx.hsetnx(key, "name", DEFAULT_ACCOUNT_NAME)
            tx.hsetnx(key, "created_at", now)
            tx.hdel(key, "deleting")
            await tx.execute()

    async def get(self, account_id: str) -> StoredAccount | None:
        fields = await self._redis.hgetall(keys.account(account_id))  # type: ignore[misc]
        return StoredAccount.from_hash(fields) if fields else None

    async def existing(self, account_ids: Sequence[str]) -> set[str]:
        """Those of `account_ids` that exist (and are not being deleted): one round trip."""
        if not account_ids:
            return set()
        unique = list(dict.fromkeys(account_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in unique:
                pipe.hmget(keys.account(account_id), ["id", "deleting"])
            rows = await pipe.execute()
        return {a for a, (id_, deleting) in zip(unique, rows, strict=True) if id_ and not deleting}

    async def list(
        self, *, after: str | None, limit: int
    ) -> tuple[builtins.list[StoredAccount], str | None]:
        """Accounts in creation order after the id `after`, and the next page's `after`."""
        lower = f"({after}" if after else "-"
        ids = await self._redis.zrangebylex(keys.ACCOUNT_INDEX, lower, "+", start=0, num=limit + 1)
        page = [raw.decode() for raw in ids[:limit]]
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in page:
                pipe.hgetall(keys.account(account_id))
            rows = await pipe.execute()
        found = [StoredAccount.from_hash(row) for row in rows if row]
        next_after = page[-1] if len(ids) > limit else None
        return [a for a in found if a is not None], next_after

    async def rename(self, account_id: str, name: str, *, now: str) -> StoredAccount | None:
        if await self.get(account_id) is None:
            return None
        await self._redis.hset(  # type: ignore[misc]
            keys.account(account_id), mapping={"name": name, "updated_at": now}
        )
        return await self.get(account_id)

    async def start_delete(self, account_id: str) -> bool:
        """Mark the account as being deleted: from now on it is gone for routing, keys and
        reads. False if there is no such account (a marked one counts: DELETE resumes)."""
        key = keys.account(account_id)
        if not await self._redis.hexists(key, "id"):  # type: ignore[misc]
            return False
        await self._redis.hset(key, "deleting", "1")  # type: ignore[misc]
        return True

    async def finish_delete(self, account_id: str) -> None:
        """Revoke every key, forget every email registration, drop the suppression list, then
        the account itself (its webhooks and deliveries are gone by then:
        service.http.accounts)."""
        for key in await self.keys(account_id):
            await self.revoke(account_id, key.id)
        await self._forget_emails(account_id)
        # UNLINK: a long suppression list is freed in the background. One command per key,
        # outside the MULTI below, so that nothing here spans two slots whatever slots the
        # suppression keys are named in (service.storage.suppressions).
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in suppressions.account_keys(account_id):
                pipe.unlink(name)
            await pipe.execute()
        async with transaction(self._redis, keys.account_keys(account_id)) as tx:
            tx.delete(
                keys.account_keys(account_id),
                keys.account_emails(account_id),
                keys.webhook_aliases(account_id),
            )
            tx.delete(keys.account(account_id))
            await tx.execute()
        # The index is another slot when partitioned: last, as a listing skips an id whose
        # hash is gone (a crash in between), and a repeated DELETE finds nothing to resume.
        await self._redis.zrem(keys.ACCOUNT_INDEX, account_id)

    # API keys

    async def add_key(
        self, account_id: str, *, key_id: str, digest: str, prefix: str, now: str
    ) -> StoredKey:
        fields = {"id": key_id, "account": account_id, "prefix": prefix, "created_at": now}
        # Two slots when partitioned (the key is found by its digest alone), so two commands,
        # in this order: a crash in between leaves a listed key that does not work (listings
        # skip it, revoking removes it), never a working key the account cannot see or revoke.
        await self._redis.hset(keys.account_keys(account_id), key_id, digest)  # type: ignore[misc]
        await self._redis.hset(keys.api_key(digest), mapping=fields)  # type: ignore[misc]
        return StoredKey(key_id, account_id, prefix, now)

    async def issue_key(self, account_id: str, *, now: datetime) -> ApiKeyCreated:
        """A new API key for the account: stored as its SHA-256 only, so the key returned
        here is the only time anyone sees it."""
        key = new_api_key(secrets.token_bytes(32))
        stored = await self.add_key(
            account_id,
            key_id=new_key_id(epoch_ms(now), secrets.token_bytes(7)),
            digest=api_key_digest(key),
            prefix=shown_prefix(key),
            now=format_timestamp(now),
        )
        return ApiKeyCreated(
            id=stored.id, key=key, prefix=stored.prefix, created_at=stored.created_at
        )

    async def keys(self, account_id: str) -> builtins.list[StoredKey]:
        """The account's keys, oldest first (key ids sort by creation)."""
        digests = await self._redis.hgetall(keys.account_keys(account_id))  # type: ignore[misc]
        ordered = sorted(digests.items())
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, digest in ordered:
                pipe.hgetall(keys.api_key(digest.decode()))
            rows = await pipe.execute()
        found = [StoredKey.from_hash(row) for row in rows if row]
        return [key for key in found if key is not None and key.account == account_id]

    async def revoke(self, account_id: str, key_id: str) -> bool:
        digest = await self._redis.hget(keys.account_keys(account_id), key_id)  # type: ignore[misc]
        if digest is None:
            return False
        # Two slots when partitioned: the key stops working first; a crash before the second
        # leaves it listed but refused, and revoking it again finishes.
        await self._redis.delete(keys.api_key(digest.decode()))
        await self._redis.hdel(keys.account_keys(account_id), key_id)  # type: ignore[misc]
        return True

    async def key_by_digest(self, digest: str) -> StoredKey | None:
        fields = await self._redis.hgetall(keys.api_key(digest))  # type: ignore[misc]
        return StoredKey.from_hash(fields) if fields else None

    async def touch_key(self, digest: str, *, now: str) -> None:
        """Record a use; only if the key still exists (a revoke must not leave a remnant)."""
        key = keys.api_key(digest)
        # Revoked between the two: the remnant holds only last_used_at, which from_hash
        # refuses, so the key stays refused.
        if await self._redis.hexists(key, "id"):  # type: ignore[misc]
            await self._redis.hset(key, "last_used_at", now)  # type: ignore[misc]

    # Email registrations

    async def register_emails(
        self, account_id: str, email_ids: Sequence[str], *, ttl_ms: int, now_ms: int
    ) -> builtins.list[str]:
        """Register each email id as the account's for `ttl_ms`; returns those another
        account holds (left unchanged)."""
        unique = list(dict.fromkeys(email_ids))
        digests = [email_digest(e) for e in unique]
        # Through the AutoPipeline, not a redis-py Pipeline: on a cluster it sends each
        # claim to its key's node, and it loads the script again wherever Redis lost it.
        claims = [
            self._pipeline.script(
                self._claim_email,
                *claim_email_call(
                    owner=keys.email_owner(digest), account=account_id, ttl_ms=ttl_ms
                ),
            )
            for digest in digests
        ]
        claimed = await asyncio.gather(*claims)
        mine = {d: now_ms + ttl_ms for d, ok in zip(digests, claimed, strict=True) if ok}
        index = keys.account_emails(account_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            if mine:
                pipe.zadd(index, mine)
            pipe.zremrangebyscore(index, "-inf", now_ms)
            await pipe.execute()
        return [e for e, ok in zip(unique, claimed, strict=True) if not ok]

    async def lookup(
        self, account_ids: Sequence[str], email_ids: Sequence[str]
    ) -> tuple[set[str], builtins.list[str | None]]:
        """Which of `account_ids` exist, and the account each of `email_ids` is registered
        to: routing a request's events, in the round trip its neighbours' commands take."""
        accounts = list(dict.fromkeys(account_ids))
        replies = [
            self._pipeline.execute("HMGET", keys.account(account_id), "id", "deleting")
            for account_id in accounts
        ]
        owner_keys = [keys.email_owner(email_digest(e)) for e in email_ids]
        if _spread_over_slots():
            # A cluster refuses an MGET over slots: one GET each, in the same round trip.
            replies += [self._pipeline.execute("GET", key) for key in owner_keys]
        elif owner_keys:
            replies.append(self._pipeline.execute("MGET", *owner_keys))
        rows = await asyncio.gather(*replies)
        found = {
            a for a, (id_, deleting) in zip(accounts, rows, strict=False) if id_ and not deleting
        }
        if _spread_over_slots():
            owners = rows[len(accounts) :]
        else:
            owners = rows[len(accounts)] if owner_keys else []
        return found, [None if value is None else value.decode() for value in owners]

    async def owners(self, email_ids: Sequence[str]) -> builtins.list[str | None]:
        """The account each email id is registered to, or None."""
        if not email_ids:
            return []
        owner_keys = [keys.email_owner(email_digest(e)) for e in email_ids]
        if _spread_over_slots():  # see `lookup`
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in owner_keys:
                    pipe.get(key)
                raw = await pipe.execute()
        else:
            raw = await self._redis.mget(owner_keys)
        return [None if value is None else value.decode() for value in raw]

    async def _forget_emails(self, account_id: str) -> None:
        index = keys.account_emails(account_id)
        while True:
            digests = await self._redis.zrange(index, 0, FORGET_BATCH - 1)
            if not digests:
                return
            await asyncio.gather(
                *(
                    self._pipeline.script(
                        self._forget_email,
                        *forget_email_call(
                            owner=keys.email_owner(digest.decode()), account=account_id
                        ),
                    )
                    for digest in digests
                )
            )
            await self._redis.zrem(index, *digests)
