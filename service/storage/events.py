"""Inbound events in Redis: one stream, de-duplication keys and lookup indexes.

`append` marks each provider event seen and appends it to the stream in one Lua script, so a
crash can neither lose an event that was answered 200 nor store a retry twice.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from service.core.ids import entry_id, entry_member, event_id, member_entry
from service.core.models import Event
from service.providers import Ignored
from service.storage import keys
from service.storage.autopipeline import AutoPipeline

# Filters scan at most this many stream entries per request; the Link header continues.
SCAN_BUDGET = 5_000
_SCAN_CHUNK = 500
# Index keys expire this long after their last event: a backstop, trimming unindexes events.
INDEX_TTL_SECONDS = 30 * 86400

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Event)


def _lua_string(text: str) -> str:
    if not re.fullmatch(r"[\w:.-]*", text):
        raise ValueError(f"not a plain key prefix: {text!r}")
    return f"'{text}'"


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Trimming: once `min_excess` entries past `maxlen`, the oldest go (at most 10,000 per call, so
# one call never holds Redis up for long), but never one that a consumer group has not read yet
# or has read and not acknowledged (the oldest such entry bounds the trim). With no group yet,
# nothing goes: the delivery group reads from the very first entry when it is created. So a
# stalled worker makes the stream grow rather than lose events (docs/delivery.md).
# The trim is exact, not `~`, because the entries going are read first: their members leave
# the email and recipient indexes with them, so the indexes hold what the stream holds and no
# more (the index keys' 30-day TTL is only a backstop). Those index key names are built here
# from each payload, so they are not declared in KEYS: fine on one Redis, not on a cluster.
# Returns the number of entries removed.
_INDEX_PREFIXES = (
    f"local EMAIL_INDEX = {_lua_string(keys.events_by_email(''))}\n"
    f"local RECIPIENT_INDEX = {_lua_string(keys.events_by_recipient(''))}\n"
)
_TRIM_FUNCTIONS = (
    _INDEX_PREFIXES
    + """
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function index_member(id)  -- as service.core.ids.entry_member
  local ms, seq = parse_id(id)
  return string.format('%015d-%010d', ms, seq)
end
local function oldest_needed(stream)
  local oldest, oldest_ms, oldest_seq = nil, nil, nil
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local needed = info['last-delivered-id']
    local pending = redis.call('XPENDING', stream, info['name'])
    if pending[1] > 0 then needed = pending[2] end
    local ms, seq = parse_id(needed)
    if oldest == nil or ms < oldest_ms or (ms == oldest_ms and seq < oldest_seq) then
      oldest, oldest_ms, oldest_seq = needed, ms, seq
    end
  end
  return oldest
end
local function unindex(entries)
  for _, entry in ipairs(entries) do
    local member = index_member(entry[1])
    local fields, payload, recipient_key = entry[2], nil, nil
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then payload = fields[i + 1] end
      if fields[i] == 'r' then recipient_key = fields[i + 1] end
    end
    -- A payload this cannot read keeps its members until the keys expire; the trim goes on.
    local ok, event = pcall(cjson.decode, payload or '')
    if ok and type(event) == 'table' then
      if type(event.email_id) == 'string' then
        redis.call('ZREM', EMAIL_INDEX .. event.email_id, member)
      end
      if type(event.recipient) == 'string' and event.recipient ~= '' then
        -- string.lower is ASCII-only; other recipients carry their index key in field r.
        recipient_key = recipient_key or RECIPIENT_INDEX .. string.lower(event.recipient)
        redis.call('ZREM', recipient_key, member)
      end
    end
  end
end
local function trim(stream, maxlen, min_excess, length)
  length = length or redis.call('XLEN', stream)
  local excess = length - maxlen
  if excess < min_excess then return 0 end
  local needed = oldest_needed(stream)
  if not needed or needed == '0-0' then return 0 end
  local going = redis.call('XRANGE', stream, '-', '(' .. needed, 'COUNT', math.min(excess, 10000))
  if #going == 0 then return 0 end
  unindex(going)
  return redis.call('XTRIM', stream, 'MAXLEN', length - #going)
end
"""
)

# KEYS: stream. ARGV: maxlen. Any excess at all: this runs when Redis is (nearly) full.
_TRIM = _TRIM_FUNCTIONS + "return trim(KEYS[1], tonumber(ARGV[1]), 1)\n"

# KEYS: stream, counts hash, then per event: seen key, email index, recipient index.
# ARGV: maxlen, seen ttl, index ttl, provider, number of events N, then per event: payload,
# recipient flag (_recipient_flag); then the provider types of ignored events.
# Returns per event: {1, entry id} when stored, {0, entry id of the original} when a duplicate.
# Trims after appending. Not before: a write early in a script lets its later writes past
# Redis's out-of-memory check, and a full Redis must refuse the XADD (EventStore.append).
_APPEND_BODY = """
local maxlen, seen_ttl, index_ttl, provider = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = tonumber(ARGV[5])
local results = {}
local stored, duplicates = 0, 0
for i = 1, n do
  local seen_key = KEYS[3 * i]
  local original = redis.call('GET', seen_key)
  if original then
    duplicates = duplicates + 1
    results[i] = {0, original}
  else
    local payload, recipient_flag = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
    local id
    if recipient_flag == '2' then
      id = redis.call('XADD', KEYS[1], '*', 'e', payload, 'r', KEYS[3 * i + 2])
    else
      id = redis.call('XADD', KEYS[1], '*', 'e', payload)
    end
    redis.call('SET', seen_key, id, 'EX', seen_ttl)
    local member = index_member(id)
    redis.call('ZADD', KEYS[3 * i + 1], 0, member)
    redis.call('EXPIRE', KEYS[3 * i + 1], index_ttl)
    if recipient_flag ~= '0' then
      redis.call('ZADD', KEYS[3 * i + 2], 0, member)
      redis.call('EXPIRE', KEYS[3 * i + 2], index_ttl)
    end
    stored = stored + 1
    results[i] = {1, id}
  end
end
if stored > 0 then
  redis.call('HINCRBY', KEYS[2], provider .. ':stored', stored)
  -- Trimming waits for 100 excess entries: the group lookups then cost each append ~1 %
  -- of what they would every time (+9 us of Redis time per one-event append at maxlen),
  -- and the entries going are read and unindexed in one batch.
  trim(KEYS[1], tonumber(maxlen), 100)
end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], provider .. ':duplicate', duplicates) end
for j = 6 + 2 * n, #ARGV do
  redis.call('HINCRBY', KEYS[2], provider .. ':ignored:' .. ARGV[j], 1)
end
return results
"""
_APPEND = _TRIM_FUNCTIONS + _APPEND_BODY


def _recipient_flag(recipient: str | None) -> str:
    """0: no recipient index; 1: one the trim finds by lowering the recipient's ASCII
    letters; 2: one it cannot (str.lower changes more), so the entry names it."""
    if not recipient:
        return "0"
    return "1" if recipient.lower() == recipient.translate(_ASCII_LOWER) else "2"


def decode_entry(entry_id_: str, fields: dict[bytes, bytes]) -> Event:
    """The event a stream entry holds (KeyError or msgspec.DecodeError if it holds none)."""
    event = _DECODER.decode(fields[b"e"])
    event.id = event_id(entry_id_)
    return event


def seen_digest(provider_event_id: str) -> str:
    digest = hashlib.sha256(provider_event_id.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class AppendResult:
    stored: list[str]  # event ids newly stored
    duplicates: list[str]  # event ids of the originals of retried events


@dataclass(frozen=True, slots=True)
class EventFilter:
    type: str | None = None
    email_id: str | None = None
    recipient: str | None = None

    def matches(self, event: Event) -> bool:
        return (
            (self.type is None or event.type == self.type)
            and (self.email_id is None or event.email_id == self.email_id)
            and (
                self.recipient is None or (event.recipient or "").lower() == self.recipient.lower()
            )
        )


class EventStore:
    def __init__(
        self,
        redis: Redis,
        *,
        maxlen: int,
        dedup_ttl_seconds: int,
        scan_budget: int = SCAN_BUDGET,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        self._redis = redis
        self._scan_budget = scan_budget
        self._maxlen = maxlen
        self._dedup_ttl = dedup_ttl_seconds
        self._append = redis.register_script(_APPEND)
        self._trim = redis.register_script(_TRIM)
        # Concurrent requests' appends, sent together.
        self._pipeline = pipeline or AutoPipeline(redis)

    async def append(
        self, provider: str, events: Sequence[Event], ignored: Sequence[Ignored] = ()
    ) -> AppendResult:
        """Store each event not seen before (by provider and provider_event_id), in order."""
        script_keys: list[str] = [keys.EVENTS_STREAM, keys.INBOUND_COUNTS]
        args: list[str | int] = [
            self._maxlen,
            self._dedup_ttl,
            INDEX_TTL_SECONDS,
            provider,
            len(events),
        ]
        for event in events:
            dedup_id = event.provider_event_id or _ENCODER.encode(event).decode()
            script_keys += [
                keys.seen(provider, seen_digest(dedup_id)),
                keys.events_by_email(event.email_id),
                keys.events_by_recipient(event.recipient or ""),
            ]
            args += [_ENCODER.encode(event).decode(), _recipient_flag(event.recipient)]
        args += [item.provider_type for item in ignored]
        if not events and not ignored:
            return AppendResult([], [])
        try:
            results = await self._pipeline.script(self._append, keys=script_keys, args=args)
        except OutOfMemoryError:
            # Redis is full and refused the XADD, having written nothing. Appends trim only
            # after they store, so a backlog the worker has since delivered would keep it
            # full: trim it (Redis allows that when full) and try once more.
            if not await self.trim():
                raise
            results = await self._pipeline.script(self._append, keys=script_keys, args=args)
        stored = [event_id(raw.decode()) for flag, raw in results if flag == 1]
        duplicates = [event_id(raw.decode()) for flag, raw in results if flag == 0]
        return AppendResult(stored, duplicates)

    async def trim(self, *, max_calls: int = 100) -> int:
        """Trim delivered events past `maxlen` now, at most 10,000 entries per script call
        (each a fraction of a millisecond of Redis time), rather than waiting for appends:
        they are refused while Redis is nearly full. Returns how many entries went."""
        removed = 0
        for _ in range(max_calls):
            count = int(await self._trim(keys=[keys.EVENTS_STREAM], args=[self._maxlen]))
            removed += count
            if count == 0:
                break
        return removed

    async def claim_token(self, provider: str, token: str, owner: str, *, ttl_seconds: int) -> bool:
        """Record that `token` came with `owner`; False if it already came with another."""
        key = keys.token(provider, seen_digest(token))
        if await self._redis.set(key, owner, nx=True, ex=ttl_seconds):
            return True
        return bool(await self._redis.get(key) == owner.encode())

    async def get(self, event_id_: str) -> Event | None:
        entry = entry_id(event_id_)
        if entry is None:
            return None
        rows = await self._redis.xrange(keys.EVENTS_STREAM, entry, entry)
        return self._decode(rows[0]) if rows else None

    async def recent(
        self, where: EventFilter, *, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        """Newest first, strictly older than the event id `before`; and the next cursor."""
        before_entry = entry_id(before) if before else None
        if where.email_id is not None or where.recipient is not None:
            return await self._recent_indexed(where, before_entry, limit)
        return await self._recent_scanned(where, before_entry, limit)

    async def _recent_scanned(
        self, where: EventFilter, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        found: list[Event] = []
        upper = f"({before}" if before else "+"
        scanned = 0
        while scanned < self._scan_budget:
            chunk = min(_SCAN_CHUNK, self._scan_budget - scanned)
            rows = await self._redis.xrevrange(keys.EVENTS_STREAM, upper, "-", count=chunk)
            if not rows:
                return found, None
            for row in rows:
                scanned += 1
                event = self._decode(row)
                if where.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return found, event.id if isinstance(event.id, str) else None
            upper = f"({rows[-1][0].decode()}"
        # Budget spent before the page filled: the cursor resumes where the scan stopped.
        return found, event_id(upper[1:])

    async def _recent_indexed(
        self, where: EventFilter, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        index = (
            keys.events_by_email(where.email_id)
            if where.email_id is not None
            else keys.events_by_recipient(where.recipient or "")
        )
        upper = f"({entry_member(before)}" if before else "+"
        found: list[Event] = []
        scanned = 0
        while scanned < self._scan_budget:
            chunk = min(_SCAN_CHUNK, self._scan_budget - scanned)
            members = await self._redis.zrevrangebylex(index, upper, "-", start=0, num=chunk)
            if not members:
                return found, None
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in members:
                    entry = member_entry(member.decode())
                    pipe.xrange(keys.EVENTS_STREAM, entry, entry)
                rows = await pipe.execute()
            for row in rows:
                scanned += 1
                if not row:
                    continue  # trimmed from the stream since it was indexed
                event = self._decode(row[0])
                if where.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return found, event.id if isinstance(event.id, str) else None
            upper = f"({members[-1].decode()}"
        return found, event_id(member_entry(upper[1:]))

    @staticmethod
    def _decode(row: tuple[bytes, dict[bytes, bytes]]) -> Event:
        raw_id, fields = row
        return decode_entry(raw_id.decode(), fields)
