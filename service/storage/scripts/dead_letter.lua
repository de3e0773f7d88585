-- Set an entry of the events stream aside as a dead letter: copy it, with why, to the
-- dead-letter stream and acknowledge it in the group, in one step, so that trimming goes on
-- past it and nothing is lost in between. Only while the entry is still pending in the
-- group under this consumer and the group has handed it out at least min_deliveries times
-- (Redis's delivery count): an entry finished or taken over meanwhile, or not tried often
-- enough yet, is left as it is.
--
-- KEYS[1] stream: the events stream of one partition (every key here is in its slot)
-- KEYS[2] dead: the dead-letter stream of the same partition
-- ARGV[1] group: the consumer group
-- ARGV[2] entry_id: the entry to set aside
-- ARGV[3] consumer: the consumer that holds it
-- ARGV[4] reason: unreadable, failed or reclaimed
-- ARGV[5] detail: what went wrong, for people
-- ARGV[6] at: when (ISO 8601)
-- ARGV[7] min_deliveries: the least delivery count at which it goes
-- Returns: the dead letter's entry id, or false when the entry was left as it is.
local stream, dead = KEYS[1], KEYS[2]
local group, entry_id, consumer = ARGV[1], ARGV[2], ARGV[3]
local reason, detail, at, min_deliveries = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])

local pending = redis.call('XPENDING', stream, group, entry_id, entry_id, 1)
if #pending == 0 or pending[1][2] ~= consumer then return false end
local deliveries = pending[1][4]
if deliveries < min_deliveries then return false end

local letter = {'entry', entry_id, 'reason', reason, 'detail', detail, 'at', at,
  'deliveries', deliveries, 'consumer', consumer}
local rows = redis.call('XRANGE', stream, entry_id, entry_id)
if #rows > 0 then
  local raw = rows[1][2]
  for i = 1, #raw, 2 do
    letter[#letter + 1] = 'f:' .. raw[i]
    letter[#letter + 1] = raw[i + 1]
  end
end
local id = redis.call('XADD', dead, '*', unpack(letter))
redis.call('XACK', stream, group, entry_id)
return id
