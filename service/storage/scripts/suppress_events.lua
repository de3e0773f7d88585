-- Put the recipients of hard bounces, complaints and unsubscribes on their account's
-- suppression list, each with the event that suppressed it. It runs right behind append.lua in
-- the same pipeline, so the event's seen key already names its stream entry (the original's,
-- for a provider's retry); an event whose append failed has none and suppresses nothing (the
-- provider's retry of it will). An address already listed keeps its entry.
--
-- KEYS[1..] seen_key, suppressions, suppressed: for each address, in order (the event's seen
--   key, the account's suppression hash, the account's set of the reason's addresses)
-- ARGV[1..] address, reason: for each address, in order (address in lower case)
-- Returns: how many addresses were added.
local added = 0
for i = 1, #KEYS / 3 do
  local k, a = 3 * (i - 1) + 1, 2 * (i - 1) + 1
  local seen_key, suppressions, suppressed = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local address, reason = ARGV[a], ARGV[a + 1]
  local entry = redis.call('GET', seen_key)
  if entry then
    -- reason is one of four names and entry a stream id: nothing in them needs escaping.
    local record = '{"reason":"' .. reason .. '","entry":"' .. entry .. '"}'
    if redis.call('HSETNX', suppressions, address, record) == 1 then
      redis.call('ZADD', suppressed, 0, address)
      added = added + 1
    end
  end
end
return added
