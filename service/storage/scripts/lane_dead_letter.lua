-- Set an entry of an account's lane aside as a dead letter of its partition, as
-- dead_letter.lua does for the events stream, and delete it from the lane, in one step: the
-- letter names the event's own entry id (the lane entry's field "id"), so that it reads,
-- lists and redrives like any dead letter; the lane's own id goes in field lane_entry. Only
-- while `consumer` holds it and the group has handed it out at least min_deliveries times.
-- A lane left empty is deleted and unlisted, as lane_ack.lua does.
--
-- KEYS[1] lane: the account's lane
-- KEYS[2] dead: its partition's dead-letter stream
-- KEYS[3] lanes: its partition's lane index
-- ARGV[1] group: the consumer group
-- ARGV[2] lane_entry_id: the lane entry to set aside
-- ARGV[3] consumer: the consumer that holds it
-- ARGV[4] reason: failed or reclaimed
-- ARGV[5] detail: what went wrong, for people
-- ARGV[6] at: when (ISO 8601)
-- ARGV[7] min_deliveries: the least delivery count at which it goes
-- ARGV[8] account: the lane's account (its member in the index)
-- Returns: the dead letter's entry id, or false when the entry was left as it is.
local lane, dead, lanes = KEYS[1], KEYS[2], KEYS[3]
local group, lane_entry_id, consumer = ARGV[1], ARGV[2], ARGV[3]
local reason, detail, at, min_deliveries = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local account = ARGV[8]

local pending = redis.call('XPENDING', lane, group, lane_entry_id, lane_entry_id, 1)
if #pending == 0 or pending[1][2] ~= consumer then return false end
local deliveries = pending[1][4]
if deliveries < min_deliveries then return false end

local rows = redis.call('XRANGE', lane, lane_entry_id, lane_entry_id)
if #rows == 0 then return false end
local raw = rows[1][2]
local original = lane_entry_id
local fields = {}
for i = 1, #raw, 2 do
  if raw[i] == 'id' then
    original = raw[i + 1]
  else
    fields[#fields + 1] = 'f:' .. raw[i]
    fields[#fields + 1] = raw[i + 1]
  end
end
local letter = {'entry', original, 'lane_entry', lane_entry_id, 'reason', reason,
  'detail', detail, 'at', at, 'deliveries', deliveries, 'consumer', consumer}
for _, value in ipairs(fields) do letter[#letter + 1] = value end
local id = redis.call('XADD', dead, '*', unpack(letter))
redis.call('XACK', lane, group, lane_entry_id)
redis.call('XDEL', lane, lane_entry_id)
if redis.call('XLEN', lane) == 0 then
  local summary = redis.call('XPENDING', lane, group)
  if summary[1] == 0 then
    redis.call('DEL', lane)
    redis.call('ZREM', lanes, account)
  end
end
return id
