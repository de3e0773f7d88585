-- Take the attempts due in one partition's retry set, hiding them for a visibility window:
-- their score moves to `hidden_until`, so no other worker takes them meanwhile, and if the
-- worker that took them dies they come due again then (nothing is lost). The taker removes
-- each once done, or sets its next due time.
--
-- KEYS[1] retries: the partition's scheduled attempts, scored by due time (ms)
-- ARGV[1] now_ms: now, in ms since the epoch
-- ARGV[2] limit: how many to take at most
-- ARGV[3] hidden_until: the score the taken get (now + the visibility window, ms)
-- Returns: {the members taken (oldest due first), the earliest due time left in the set
-- (ms, as a string; "" when it is empty)}.
local retries = KEYS[1]
local now_ms, limit, hidden_until = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local due = redis.call('ZRANGEBYSCORE', retries, '-inf', now_ms, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZADD', retries, 'XX', hidden_until, member)
end
local first = redis.call('ZRANGE', retries, 0, 0, 'WITHSCORES')
return {due, first[2] or ''}
