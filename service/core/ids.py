"""Every id and time format of the service, built and parsed in this one place (pure).

event id        evt_{stream entry id}          evt_1772532000000-0
                evt_{entry id}_{partition}     evt_1772532000000-0_3 with several partitions
                                               (service.core.partitions): entry ids are per
                                               partition's stream, so the id names it
test event id   evt_test_{token}               (never stored in the stream)
delivery id     dlv_{entry id}_{webhook id}    deterministic: a re-read finds it again
dead letter id  dl_{dead-letter entry id}      dl_1772532000000-0 (an entry of mh:events:dead)
                dl_{entry id}_{partition}      with several partitions, as event ids
lease owner     {delivery id}:{tag}{detail}    who may attempt a delivery now (LeaseTag)
retry member    {lease owner}[:rate]           a scheduled attempt (mh:retries); :rate when
                                               its rate-limit slot is taken already
operational     {type}:{delivery id}:{attempt} provider_event_id of a webhook.disabled or
                                               delivery.exhausted event (de-duplication)
timestamps      2026-03-03T10:00:00Z           ISO 8601, UTC, to the second (the API page)
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from enum import Enum

EVENT_ID_PREFIX = "evt_"
DELIVERY_ID_PREFIX = "dlv_"
DEAD_LETTER_ID_PREFIX = "dl_"
_PARTITION = r"(?:_(\d{1,4}))?"
_EVENT_ID = re.compile(r"^evt_(\d{1,20})-(\d{1,20})" + _PARTITION + "$")
_DEAD_LETTER_ID = re.compile(r"^dl_(\d{1,20})-(\d{1,20})" + _PARTITION + "$")


def event_id(entry_id: str, partition: int | None = None) -> str:
    """The public id of the event stored as stream entry `entry_id`: of `partition`'s stream
    when given (only with several partitions; with one, ids are as before partitions)."""
    if partition is None:
        return EVENT_ID_PREFIX + entry_id
    return f"{EVENT_ID_PREFIX}{entry_id}_{partition}"


def entry_id(event_id: str) -> str | None:
    """The stream entry id an event id denotes, or None if it is not one of ours."""
    return _stream_id(_EVENT_ID.match(event_id))


def event_location(event_id: str) -> tuple[str, int | None] | None:
    """The stream entry id an event id denotes and the partition it names (None: no
    partition, as with one), or None if it is not one of ours."""
    return _located(_EVENT_ID.match(event_id))


def dead_letter_id(entry_id: str, partition: int | None = None) -> str:
    """The public id of the dead letter stored as entry `entry_id` of the dead-letter stream
    (of `partition`, as event_id)."""
    if partition is None:
        return DEAD_LETTER_ID_PREFIX + entry_id
    return f"{DEAD_LETTER_ID_PREFIX}{entry_id}_{partition}"


def dead_letter_entry(dead_letter_id: str) -> str | None:
    """The dead-letter stream entry id a dead letter id denotes, or None if it is none."""
    return _stream_id(_DEAD_LETTER_ID.match(dead_letter_id))


def dead_letter_location(dead_letter_id: str) -> tuple[str, int | None] | None:
    """As event_location, for a dead letter id."""
    return _located(_DEAD_LETTER_ID.match(dead_letter_id))


def _located(match: re.Match[str] | None) -> tuple[str, int | None] | None:
    entry = _stream_id(match)
    if entry is None or match is None:
        return None
    return entry, None if match[3] is None else int(match[3])


def _stream_id(match: re.Match[str] | None) -> str | None:
    if not match or int(match[1]) >= 2**64 or int(match[2]) >= 2**64:
        return None  # not a stream id Redis would accept
    return f"{int(match[1])}-{int(match[2])}"


def test_event_id(token: str) -> str:
    return f"{EVENT_ID_PREFIX}test_{token}"


def entry_time(entry_id: str) -> datetime:
    """When a stream entry was added: its id starts with the milliseconds since the epoch."""
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, UTC)


def ingested_ms(event_id: str) -> int | None:
    """When a stored event was ingested (ms since the epoch, its entry id's first part);
    None for an id that names no stream entry (a test event)."""
    ms, dash, _ = event_id.removeprefix(EVENT_ID_PREFIX).partition("-")
    return int(ms) if dash and ms.isdigit() and event_id.startswith(EVENT_ID_PREFIX) else None


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair: "10-2" sorts after "9-7"."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_member(entry_id: str) -> str:
    """A stream entry id zero-padded, so that lexicographic order is time order (the email
    and recipient indexes; the append and trim scripts pad the same way)."""
    ms, seq = entry_id.split("-")
    return f"{int(ms):015d}-{int(seq):010d}"


def member_entry(member: str) -> str:
    ms, seq = member.split("-")
    return f"{int(ms)}-{int(seq)}"


def entry_after(entry_id: str) -> str:
    """The least stream entry id greater than `entry_id` (a bound for XTRIM MINID)."""
    ms, seq = (int(part) for part in entry_id.split("-"))
    return f"{ms}-{seq + 1}" if seq < 2**64 - 1 else f"{ms + 1}-0"


def entry_key(entry_id: str) -> tuple[int, int]:
    """Stream entry ids in their order: `min(ids, key=entry_key)`."""
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def delivery_id(entry_id: str, webhook_id: int) -> str:
    return f"{DELIVERY_ID_PREFIX}{entry_id}_{webhook_id}"


def test_delivery_id(token: str, webhook_id: int) -> str:
    return f"{DELIVERY_ID_PREFIX}test_{token}_{webhook_id}"


def delivery_member(created_at_ms: int, delivery_id: str) -> str:
    """A webhook's delivery index member: creation time zero-padded, so that lexicographic
    order is time order; the delivery id follows the colon."""
    return f"{created_at_ms:015d}:{delivery_id}"


def member_delivery(member: str) -> str:
    return member.split(":", 1)[1]


def ms_member_bound(ms: int) -> str:
    """The index bound of a time, for ZRANGEBYLEX over delivery members."""
    return f"{ms:015d}"


class LeaseTag(Enum):
    """Who took a delivery's lease, in the owner tag: each way an attempt is started gets
    its own, so two ways can never renew each other's lease by accident."""

    ATTEMPT = "a"  # the next attempt on the retry schedule: {id}:a{attempt number}
    HAND_OFF = "h"  # a first attempt put off, its endpoint saturated: {id}:h{ms}
    SWEEP = "s"  # re-queued by maintenance after its lease lapsed: {id}:s{ms}
    MANUAL_RETRY = "m"  # POST …/deliveries/{id}/retry: {id}:m{ms}
    RECOVER = "r"  # POST …/recover: {id}:r{ms}
    TEST = "t"  # POST …/test: {id}:t
    RATE_WAIT = "w"  # a first attempt scheduled for its rate-limit slot: {id}:w{ms}


def lease_owner(delivery_id: str, tag: LeaseTag, detail: int | str = "") -> str:
    return f"{delivery_id}:{tag.value}{detail}"


def handed_off_at_ms(owner: str) -> int | None:
    """When a HAND_OFF lease owner (`{id}:h{ms}`) was handed off; None for any other owner."""
    tag = owner.rsplit(":", 1)[-1]
    if tag[:1] == LeaseTag.HAND_OFF.value and tag[1:].isdigit():
        return int(tag[1:])
    return None


RATE_SLOT_TAKEN_SUFFIX = ":rate"


def retry_member(owner: str, *, rate_slot_taken: bool = False) -> str:
    """A scheduled attempt: the lease owner that will make it (which names the delivery),
    marked when it waited for its rate-limit slot already. The same attempt scheduled twice
    is the same member (once in the set); the owner's own attempt may schedule its wait for
    a slot, which is therefore another member."""
    return owner + RATE_SLOT_TAKEN_SUFFIX if rate_slot_taken else owner


def parse_retry_member(member: str) -> tuple[str, str, bool]:
    """(delivery id, lease owner, rate slot taken) of a retry member."""
    rate_slot_taken = member.endswith(RATE_SLOT_TAKEN_SUFFIX)
    owner = member.removesuffix(RATE_SLOT_TAKEN_SUFFIX)
    return owner.rsplit(":", 1)[0], owner, rate_slot_taken


def operational_event_key(event_type: str, delivery_id: str, attempt: int) -> str:
    """The provider_event_id of an operational event: the attempt whose outcome it tells,
    so that appending it again (a repeated outcome) stores it once."""
    return f"{event_type}:{delivery_id}:{attempt}"


def tracking_event_key(kind: str, tag: str, second: int | None = None) -> str:
    """The provider_event_id of a first-party event: an open or click of one tracking link
    within one second (`kind` o or c), or an unsubscribe by one link (u, no second)."""
    return f"{kind}:{tag}" if second is None else f"{kind}:{tag}:{second}"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_timestamp(text: str) -> datetime | None:
    """An ISO 8601 time as the API takes it (`since`): UTC when it names no offset; None if
    it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC to the second with a `Z`, as on the API page: 2026-03-03T10:00:00Z."""
    return _format_second(int(moment.timestamp() // 1))


@functools.lru_cache(maxsize=8)
def _format_second(second: int) -> str:
    # Cached: a busy worker formats the same second for every attempt made within it.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
