-- include: _entry_ids
-- The second half of a trim (service.storage.trimming): remove the oldest entries of the
-- stream, planned from what Python read a moment ago, and their index members. The plan
-- may be stale: a group may have been created or reset since. So this looks again at the
-- oldest entry any consumer group still needs (not read yet, or read and not acknowledged)
-- and removes only what is strictly older than it, as well as below `below_id`. With no
-- group, nothing goes (the delivery group reads from the very first entry).
--
-- KEYS[1] stream: the events stream of one partition (every key here is in its slot)
-- KEYS[2..] index_key: the email, recipient or account index of the member at that position
-- ARGV[1] below_id: the entry id just after the newest entry planned to go
-- ARGV[2..] member: the index member (of a planned entry) to remove from that index_key
-- Returns: the number of entries removed.
local stream = KEYS[1]
local below_id = ARGV[1]
local first_pair = 2  -- from here on, KEYS[i] and ARGV[i] go together

if redis.call('EXISTS', stream) == 0 then return 0 end
local needed = oldest_needed(stream)
if not needed then return 0 end
local threshold = below_id
if id_below(needed, below_id) then threshold = needed end
-- Members sort as their entries do: those below the threshold's are of entries that go.
local member_limit = index_member(threshold)
for i = first_pair, #KEYS do
  if ARGV[i] < member_limit then redis.call('ZREM', KEYS[i], ARGV[i]) end
end
return redis.call('XTRIM', stream, 'MINID', threshold)
