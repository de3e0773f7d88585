"""Trimming an events stream back to `maxlen`, in two phases, never past what a consumer
group still needs. One EventTrimmer per partition's stream (EventStore gives each its share
of EVENTS_MAXLEN); the index keys it names are that partition's.

1. Plan (Python, reads only): the stream's length; the group bound, the oldest entry a
   group still needs (for each group the oldest entry it has read and not acknowledged,
   else the last one it has read; the least over the groups; nothing goes with no group);
   and the oldest entries strictly below that bound, at most 10,000 (so one script never
   holds Redis up for long). Their email and recipient index keys are computed here, with
   the same `keys` functions the append uses, so every key the script touches arrives in
   KEYS.
2. Apply (trim_events.lua): the script looks at the group bound again, removes the planned
   entries strictly below it (XTRIM MINID) and their index members, and returns how many
   went. A plan gone stale (a group created or reset meanwhile) removes less, never an
   entry a group has not read or acknowledged.

The indexes hold what the stream holds: an entry's members leave with it (the index keys'
30-day TTL is only a backstop). A payload the plan cannot read keeps its members until
their keys expire; the trim goes on.

Appends trim nothing themselves: the append script says when a trim is due (100 entries past
`maxlen`, so the group lookups and the reads are paid once per hundred appends), and the
EventStore runs one `EventTrimmer.soon` in the background: at most one per store at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from service.core.accounts import indexed_account
from service.core.ids import entry_after, entry_key, entry_member
from service.storage import keys, scripts
from service.storage.background import SingleFlight
from service.storage.connection import RedisClient, register_script

logger = logging.getLogger("mailhooks.trim")

# A trim is due once the stream is this many entries past maxlen.
TRIM_EXCESS = 100
# Entries one script removes at most.
TRIM_BATCH = 10_000
# After a background trim that could remove nothing (the groups hold everything back) or
# failed, the appends' requests for another wait this long.
REST_SECONDS = 1.0

_TRIM = scripts.load("trim_events")


def trim_events_call(
    *, stream: str, below_id: str, index_keys: Sequence[str], members: Sequence[str]
) -> scripts.ScriptArgs:
    """KEYS and ARGV of trim_events.lua: `index_keys` and `members` pair up."""
    return [stream, *index_keys], [below_id, *members]


class _Indexed(msgspec.Struct):
    """What of a stored event names its index keys."""

    email_id: str
    recipient: str | None = None


_INDEXED = msgspec.json.Decoder(_Indexed)


@dataclass(slots=True)
class TrimPlan:
    below_id: str  # the entries planned to go are those below this id
    entries: int
    index_keys: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # one per index key


def index_keys(fields: dict[bytes, bytes], partition: int = 0) -> list[str]:
    """The email, recipient and account index keys the append gave an entry of `partition`'s
    stream with these fields (none when they hold no event): what a trim removes it from, and
    a redriven dead letter is added to."""
    try:
        event = _INDEXED.decode(fields[b"e"])
    except (KeyError, msgspec.DecodeError):
        return []
    # Operational events (webhook.disabled, …) are about no email: no email index.
    found = [keys.events_by_email(event.email_id, partition)] if event.email_id else []
    if event.recipient:
        # The append's index key: named in field r when ASCII lowering would miss it.
        named = fields.get(b"r")
        found.append(
            named.decode() if named else keys.events_by_recipient(event.recipient, partition)
        )
    account = (fields.get(b"a") or b"").decode() or None
    # An account of another partition cannot have been indexed here (its key is in another
    # slot: naming it would fail the whole script).
    if (
        account is not None
        and indexed_account(account)
        and keys.partitioning().of_account(account) == partition
    ):
        found.append(keys.events_by_account(account))
    return found


def plan_entries(rows: Sequence[tuple[bytes, dict[bytes, bytes]]], partition: int = 0) -> TrimPlan:
    """The plan for removing `rows` (XRANGE from the oldest of `partition`'s stream): their
    index keys and members."""
    plan = TrimPlan(below_id=entry_after(rows[-1][0].decode()), entries=len(rows))
    for raw_id, fields in rows:
        member = entry_member(raw_id.decode())
        for key in index_keys(fields, partition):
            plan.index_keys.append(key)
            plan.members.append(member)
    return plan


class EventTrimmer:
    """Trims one partition's stream (EventStore has one per partition)."""

    def __init__(self, redis: RedisClient, *, maxlen: int, partition: int = 0) -> None:
        self._redis = redis
        self._maxlen = maxlen
        self._partition = partition
        self._stream = keys.events_stream(partition)
        self._script = register_script(redis, _TRIM.source)
        self._background = SingleFlight(
            self._trim_due,
            rest_seconds=REST_SECONDS,
            logger=logger,
            what="trimming the events stream",
        )
        self._joined: asyncio.Future[int] | None = None

    async def trim(self, *, min_excess: int = 1, max_calls: int = 100) -> int:
        """Trim now, one plan and one script at a time, until nothing more can go (or
        `max_calls` scripts ran). Returns how many entries went."""
        removed = 0
        for _ in range(max_calls):
            plan = await self.plan(min_excess=min_excess)
            if plan is None:
                break
            removed += await self.apply(plan)
            min_excess = 1  # past the threshold once: this trim goes down to maxlen
        return removed

    def trim_joined(self) -> asyncio.Future[int]:
        """`trim()`, or the one started here and still under way: concurrent callers (the
        appends a full Redis refused) share one trim rather than read the same entries."""
        if self._joined is None:
            self._joined = joined = asyncio.ensure_future(self.trim())
            joined.add_done_callback(lambda _: setattr(self, "_joined", None))
        return asyncio.shield(self._joined)

    async def plan(self, *, min_excess: int = 1) -> TrimPlan | None:
        """What to remove next, if at least `min_excess` entries are past maxlen and some
        of those are below the group bound."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._stream)
            pipe.xinfo_groups(self._stream)
            length, groups = await pipe.execute(raise_on_error=False)
        excess = length - self._maxlen
        if excess < min_excess:
            return None
        if isinstance(groups, Exception):
            raise groups
        if not groups:
            return None  # the delivery group, once created, reads from the first entry
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in groups:
                if group["pending"]:
                    pipe.xpending(self._stream, group["name"])
            summaries = iter(await pipe.execute())
        needed = []
        for group in groups:
            # The oldest entry it has read and not acknowledged, else the last it has read.
            summary = next(summaries) if group["pending"] else None
            oldest = summary["min"] if summary and summary["pending"] else None
            needed.append((oldest or group["last-delivered-id"]).decode())
        bound = min(needed, key=entry_key)
        if bound == "0-0":
            return None  # a group that has read nothing yet
        # Its own connection, not the AutoPipeline: this reply can be megabytes, and the
        # commands batched behind it would wait for it.
        rows = await self._redis.xrange(
            self._stream, "-", f"({bound}", count=min(excess, TRIM_BATCH)
        )
        return plan_entries(rows, self._partition) if rows else None

    async def apply(self, plan: TrimPlan) -> int:
        script_keys, args = trim_events_call(
            stream=self._stream,
            below_id=plan.below_id,
            index_keys=plan.index_keys,
            members=plan.members,
        )
        return int(await self._script(keys=script_keys, args=args))

    def soon(self) -> None:
        """Trim in the background (an append found one due): at most one such trim at a
        time; requests while one runs make it look again when it is done."""
        self._background.request(None)

    async def _trim_due(self, _: None) -> bool:
        # Nothing removed: held back by a group (a stalled worker); rest rather than look
        # again for every append.
        return not await self.trim(min_excess=TRIM_EXCESS)

    async def drain(self) -> None:
        """Finish the background trim, with any due, without resting: before the client
        closes, and in tests."""
        await self._background.drain()
