"""Copying a deployment's configuration to another Redis whose keys are named for another
partitioning: `mailhooks migrate` (docs/operations.md#moving-to-a-cluster).

Copied: accounts (hash, index), API keys (hashes by digest, each account's list), webhooks
(every field of the hash, the account's index, its subscriber sets), email-owner
registrations with the time they have left, suppression lists, the default account. Not
copied: events, deliveries and their history, de-duplication keys, idempotency records,
portal sessions, metrics: they stay in the source, whose worker drains them.

Names and data are kept apart. `keys.use` is process-wide, so rather than read everything
under one naming and write it under the other, each account's key names are computed for
both partitionings first (`keys.naming`, a block with no await in it), and its data then
goes from the source's names to the target's, one account at a time (its account hash, keys
and webhooks held at once: about 1 KB per webhook and 300 B per key, so at most about 100 KB
with MAX_WEBHOOKS_PER_ACCOUNT's 100), email registrations and suppressions in batches of
BATCH (about 150 KB each). The source is sent read commands only.

A run is idempotent: every write sets what the source holds (a webhook's hash is replaced
whole, by one script with its index and subscriber sets), a renamed webhook keeps the new id
its alias names, and the target's `keys.MIGRATION` keeps the id ceiling of the first run. So
a run that stopped part way is resumed by running it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.errors import Conflict
from service.core.migration import (
    MigrationReport,
    RenamedWebhook,
    id_ceiling,
    keeps_id,
    sequence_floor,
)
from service.core.partitions import Partitioning
from service.core.suppressions import REASONS
from service.storage import keys, scripts
from service.storage.connection import RedisClient, register_script
from service.storage.suppressions import StoredEntry
from service.storage.webhooks import SUBSCRIBER_TYPES, StoredWebhook

_MIGRATE_WEBHOOK = scripts.load("migrate_webhook")
_RAISE_SEQUENCE = scripts.load("raise_sequence")
# Accounts, email registrations and suppressed addresses are read this many at a time.
BATCH = 1000
_ENTRY = msgspec.json.Decoder(StoredEntry)


def migrate_webhook_call(
    *,
    webhook: str,
    account_index: str,
    subscriber_sets: list[str],
    webhook_id: int,
    fields: list[tuple[bytes, bytes]],
    positions: list[int],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of migrate_webhook.lua: `positions` 1-based among `subscriber_sets`."""
    args: list[str | int | bytes] = [webhook_id, len(fields)]
    for field, value in fields:
        args += [field, value]
    args += positions
    return [webhook, account_index, *subscriber_sets], args


def raise_sequence_call(*, sequence: str, floor: int) -> scripts.ScriptArgs:
    """KEYS and ARGV of raise_sequence.lua."""
    return [sequence], [floor]


@dataclass(frozen=True, slots=True)
class AccountNames:
    """The names of one account's keys under the naming in force when `of` is called."""

    account: str
    api_keys: str
    webhooks: str
    emails: str
    suppressions: str
    suppressed: dict[str, str]  # reason → its set
    aliases: str
    subscribers: list[str]  # SUBSCRIBER_TYPES order

    @classmethod
    def of(cls, account_id: str) -> AccountNames:
        return cls(
            account=keys.account(account_id),
            api_keys=keys.account_keys(account_id),
            webhooks=keys.account_webhooks(account_id),
            emails=keys.account_emails(account_id),
            suppressions=keys.suppressions(account_id),
            suppressed={reason: keys.suppressed(account_id, reason) for reason in REASONS},
            aliases=keys.webhook_aliases(account_id),
            subscribers=[keys.subscribers(account_id, t) for t in SUBSCRIBER_TYPES],
        )


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Migration:
    """One run from `source` (keys named for `source_parts`) to `target` (`target_parts`);
    with `dry_run`, nothing is written anywhere."""

    def __init__(
        self,
        source: RedisClient,
        target: RedisClient,
        *,
        source_parts: Partitioning,
        target_parts: Partitioning,
        dry_run: bool,
        started_at: str,
        source_label: str,
    ) -> None:
        self._source, self._target = source, target
        self._from, self._to = source_parts, target_parts
        self._dry_run = dry_run
        self._started_at, self._label = started_at, source_label
        self._write_webhook = register_script(target, _MIGRATE_WEBHOOK.source)
        self._raise_sequence = register_script(target, _RAISE_SEQUENCE.source)
        self._predicted: dict[int, int] = {}  # dry run: each target sequence's next value
        self._ceiling = 0
        self.report = MigrationReport(dry_run=dry_run, partitions=target_parts.count, id_ceiling=0)

    async def run(self) -> MigrationReport:
        await self._prepare()
        async for account_id in self._accounts():
            await self._account(account_id)
        if not self._dry_run:
            # The last run that went to the end: the one whose copy the target holds.
            await self._target.hset(keys.MIGRATION, "finished", self._started_at)  # type: ignore[misc]
        return self.report

    # -- the id ceiling and the sequences ------------------------------------------------

    async def _prepare(self) -> None:
        marker = {
            _text(k): _text(v)
            for k, v in (await self._target.hgetall(keys.MIGRATION)).items()  # type: ignore[misc]
        }
        if marker:
            if int(marker["partitions"]) != self._to.count:
                raise Conflict(
                    f"the target was migrated to with {marker['partitions']} partitions, not "
                    f"{self._to.count}: the count is fixed for a deployment's life"
                )
            self._ceiling = int(marker["id_ceiling"])
        else:
            await self._refuse_a_used_target()
            with keys.naming(self._from):
                names = [keys.webhook_sequence(p) for p in self._from.all()]
            values = [await self._source.get(name) for name in names]
            self._ceiling = id_ceiling(
                {p: int(v) for p, v in enumerate(values) if v is not None}, self._from
            )
            if not self._dry_run:
                marker = {
                    "partitions": str(self._to.count),
                    "id_ceiling": str(self._ceiling),
                    "source": self._label,
                    "started_at": self._started_at,
                }
                await self._target.hset(keys.MIGRATION, mapping=marker)  # type: ignore[misc]
        self.report.id_ceiling = self._ceiling
        floor = sequence_floor(self._ceiling, self._to)
        with keys.naming(self._to):
            sequences = [keys.webhook_sequence(p) for p in self._to.all()]
        for partition, sequence in enumerate(sequences):
            if self._dry_run:
                current = int(await self._target.get(sequence) or 0)
                self._predicted[partition] = max(current, floor)
            else:
                await self._raise_sequence(*raise_sequence_call(sequence=sequence, floor=floor))

    async def _refuse_a_used_target(self) -> None:
        """A target that holds accounts or has issued webhook ids of its own (and was not
        migrated to before) is refused: its ids could be the ones copied."""
        with keys.naming(self._to):
            names = [keys.ACCOUNT_INDEX, *(keys.webhook_sequence(p) for p in self._to.all())]
        for name in names:
            if await self._target.exists(name):
                raise Conflict(
                    f"the target holds a deployment already ({name} exists): migrate to an "
                    "empty Redis"
                )

    async def _new_id(self, account: str, names: AccountNames, old_id: int) -> int:
        """The id the webhook `old_id` has on the target: the one its alias names, or a new
        one from its partition's sequence (recorded in the alias before its hash is written,
        so that a second run gives it the same)."""
        known = await self._target.hget(names.aliases, str(old_id))  # type: ignore[misc]
        if known is not None:
            return int(known)
        partition = self._to.of_account(account)
        if self._dry_run:
            self._predicted[partition] += 1
            return self._to.webhook_id(self._predicted[partition], partition)
        with keys.naming(self._to):
            sequence = keys.webhook_sequence(partition)
        new_id = self._to.webhook_id(int(await self._target.incr(sequence)), partition)
        if not await self._target.hsetnx(names.aliases, str(old_id), str(new_id)):  # type: ignore[misc]
            # Another run took one meanwhile: its id stands (this one is burnt, harmlessly).
            return int(await self._target.hget(names.aliases, str(old_id)))  # type: ignore[misc]
        return new_id

    # -- accounts --------------------------------------------------------------------------

    async def _accounts(self) -> AsyncIterator[str]:
        """Every account id of the source, in index order, then the default account if it is
        not indexed (its webhooks may predate its account record)."""
        after = "-"
        seen_default = False
        while True:
            page = await self._source.zrangebylex(keys.ACCOUNT_INDEX, after, "+", 0, BATCH)
            for raw in page:
                account_id = _text(raw)
                seen_default = seen_default or account_id == DEFAULT_ACCOUNT
                yield account_id
            if len(page) < BATCH:
                break
            after = "(" + _text(page[-1])
        if not seen_default:
            yield DEFAULT_ACCOUNT

    async def _account(self, account_id: str) -> None:
        with keys.naming(self._from):
            src = AccountNames.of(account_id)
        with keys.naming(self._to):
            dst = AccountNames.of(account_id)
        async with self._source.pipeline(transaction=False) as pipe:
            pipe.hgetall(src.account)
            pipe.hgetall(src.api_keys)
            pipe.zrange(src.webhooks, 0, -1)
            account, key_digests, webhook_ids = await pipe.execute()
        if account.get(b"deleting") == b"1":
            self.report.skipped.append(f"{account_id}: being deleted (finish the DELETE first)")
            return
        if not account and account_id != DEFAULT_ACCOUNT:
            self.report.skipped.append(f"{account_id}: indexed, but no account hash")
            return
        if account:
            self.report.accounts += 1
            if not self._dry_run:
                # As AccountStore.create: the index (another slot) first, then the hash.
                await self._target.zadd(keys.ACCOUNT_INDEX, {account_id: 0})
                await self._target.hset(dst.account, mapping=account)  # type: ignore[misc]
        await self._api_keys(account_id, key_digests, dst)
        await self._webhooks(account_id, [int(i) for i in webhook_ids], src, dst)
        await self._emails(account_id, src, dst)
        await self._suppressions(src, dst)

    async def _api_keys(
        self, account_id: str, listed: dict[bytes, bytes], dst: AccountNames
    ) -> None:
        async with self._source.pipeline(transaction=False) as pipe:
            for digest in listed.values():
                pipe.hgetall(keys.api_key(digest.decode()))  # not partitioned: one name
            rows = await pipe.execute()
        found = {
            key_id: digest
            for (key_id, digest), row in zip(listed.items(), rows, strict=True)
            if row.get(b"account") == account_id.encode()
        }
        self.report.api_keys += len(found)
        if self._dry_run or not found:
            return
        # As AccountStore.add_key: the account lists a key before the key works.
        await self._target.hset(dst.api_keys, mapping=found)  # type: ignore[misc]
        async with self._target.pipeline(transaction=False) as pipe:
            for (_, digest), row in zip(listed.items(), rows, strict=True):
                if row.get(b"account") == account_id.encode():
                    pipe.hset(keys.api_key(digest.decode()), mapping=row)
            await pipe.execute()

    # -- webhooks --------------------------------------------------------------------------

    async def _webhooks(
        self, account_id: str, ids: list[int], src: AccountNames, dst: AccountNames
    ) -> None:
        with keys.naming(self._from):
            hashes = [keys.webhook(i) for i in ids]
        async with self._source.pipeline(transaction=False) as pipe:
            for name in hashes:
                pipe.hgetall(name)
            rows = await pipe.execute()
        for old_id, row in zip(ids, rows, strict=True):
            if not row:
                continue  # deleted between the two reads
            webhook = StoredWebhook.from_hash(row)
            if webhook.account != account_id:
                continue
            self.report.webhooks += 1
            new_id = old_id
            if not keeps_id(old_id, account_id, self._to, ceiling=self._ceiling):
                new_id = await self._new_id(account_id, dst, old_id)
                self.report.renamed.append(
                    RenamedWebhook(account_id=account_id, old_id=old_id, new_id=new_id)
                )
            if self._dry_run:
                continue
            with keys.naming(self._to):
                name = keys.webhook(new_id)
            fields = [(k, str(new_id).encode() if k == b"id" else v) for k, v in row.items()]
            positions = [SUBSCRIBER_TYPES.index(t) + 1 for t in webhook.events]
            script_keys, args = migrate_webhook_call(
                webhook=name,
                account_index=dst.webhooks,
                subscriber_sets=dst.subscribers,
                webhook_id=new_id,
                fields=fields,
                positions=positions,
            )
            await self._write_webhook(keys=script_keys, args=args)

    # -- email registrations and suppressions ----------------------------------------------

    async def _emails(self, account_id: str, src: AccountNames, dst: AccountNames) -> None:
        cursor: int = 0
        while True:
            cursor, batch = await self._source.zscan(src.emails, cursor, count=BATCH)
            digests = [_text(member) for member, _ in batch]
            async with self._source.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.get(keys.email_owner(digest))  # not partitioned: one name
                    pipe.pttl(keys.email_owner(digest))
                replies = await pipe.execute()
            live = [
                (digest, score, ttl)
                for digest, (_, score), owner, ttl in zip(
                    digests, batch, replies[::2], replies[1::2], strict=True
                )
                if owner == account_id.encode() and ttl != -2
            ]
            self.report.email_registrations += len(live)
            if live and not self._dry_run:
                # As AccountStore.register_emails: the owner keys, then the account's index.
                async with self._target.pipeline(transaction=False) as pipe:
                    for digest, _, ttl in live:
                        pipe.set(keys.email_owner(digest), account_id, px=ttl if ttl > 0 else None)
                    await pipe.execute()
                await self._target.zadd(dst.emails, {d: score for d, score, _ in live})
            if not cursor:
                return

    async def _suppressions(self, src: AccountNames, dst: AccountNames) -> None:
        cursor: int = 0
        while True:
            cursor, batch = await self._source.hscan(src.suppressions, cursor, count=BATCH)
            self.report.suppressions += len(batch)
            if batch and not self._dry_run:
                by_reason: dict[str, dict[bytes, int]] = {}
                for address, raw in batch.items():
                    reason = _ENTRY.decode(raw).reason
                    by_reason.setdefault(reason, {})[address] = 0
                await self._target.hset(dst.suppressions, mapping=batch)  # type: ignore[misc]
                async with self._target.pipeline(transaction=False) as pipe:
                    for reason, members in by_reason.items():
                        pipe.zadd(dst.suppressed[reason], members)
                    await pipe.execute()
            if not cursor:
                return
