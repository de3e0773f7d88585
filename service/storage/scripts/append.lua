-- include: _entry_ids
-- Store each event not seen before (by its seen key), in order: append it to the stream
-- with its account, mark it seen, index it by email, recipient and account, and count what
-- was stored, duplicated, unrouted and ignored. It does not trim: it says when a trim is due (EventStore trims in the
-- background). Nothing is written before the first XADD, so a full Redis refuses the
-- append having written nothing (EventStore.append trims and tries again).
--
-- KEYS[1] stream: the events stream of one partition (every key here is in its slot)
-- KEYS[2] counts: the inbound counters hash
-- KEYS[3..] seen_key, email_index, recipient_index, account_index: for each event, in order
-- ARGV[1] trim_at: the stream length from which a trim is due
-- ARGV[2] seen_ttl: seconds a seen key lasts
-- ARGV[3] index_ttl: seconds an index key lasts after its last event
-- ARGV[4] provider: the provider's name, for the counters
-- ARGV[5] event_count: how many events follow
-- ARGV[6..] payload, recipient_flag, account, account_flag, email_flag: for each event, in
--   order (recipient_flag: see _recipient_flag; account: "" when unrouted; account_flag:
--   "1" to index it under account_index, "0" for the default account and unrouted events;
--   email_flag: "1" to index it under email_index, "0" for an event about no email)
-- ARGV[..] ignored_type: then the provider type of each event ignored
-- Returns: {1 if a trim is due else 0, {per event: {1, entry id} when stored, or
-- {0, entry id of the original} when a duplicate}}.
local stream, counts = KEYS[1], KEYS[2]
local trim_at, seen_ttl, index_ttl, provider = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local event_count = tonumber(ARGV[5])
local first_event_key, first_event_arg = 3, 6
local first_ignored = first_event_arg + 5 * event_count

local results = {}
local stored, duplicates, unrouted = 0, 0, 0
for i = 1, event_count do
  local k, a = first_event_key + 4 * (i - 1), first_event_arg + 5 * (i - 1)
  local seen_key, email_index, recipient_index = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local account_index = KEYS[k + 3]
  local payload, recipient_flag, account, account_flag = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local email_flag = ARGV[a + 4]
  local original = redis.call('GET', seen_key)
  if original then
    duplicates = duplicates + 1
    results[i] = {0, original}
  else
    local id
    if recipient_flag == '2' then
      -- str.lower changes more than ASCII letters here: the entry names its index key.
      id = redis.call('XADD', stream, '*', 'e', payload, 'a', account, 'r', recipient_index)
    else
      id = redis.call('XADD', stream, '*', 'e', payload, 'a', account)
    end
    redis.call('SET', seen_key, id, 'EX', seen_ttl)
    local member = index_member(id)
    if email_flag == '1' then
      redis.call('ZADD', email_index, 0, member)
      redis.call('EXPIRE', email_index, index_ttl)
    end
    if recipient_flag ~= '0' then
      redis.call('ZADD', recipient_index, 0, member)
      redis.call('EXPIRE', recipient_index, index_ttl)
    end
    if account_flag == '1' then
      redis.call('ZADD', account_index, 0, member)
      redis.call('EXPIRE', account_index, index_ttl)
    end
    if account == '' then unrouted = unrouted + 1 end
    stored = stored + 1
    results[i] = {1, id}
  end
end
if stored > 0 then redis.call('HINCRBY', counts, provider .. ':stored', stored) end
if duplicates > 0 then redis.call('HINCRBY', counts, provider .. ':duplicate', duplicates) end
if unrouted > 0 then redis.call('HINCRBY', counts, provider .. ':unrouted', unrouted) end
for j = first_ignored, #ARGV do
  redis.call('HINCRBY', counts, provider .. ':ignored:' .. ARGV[j], 1)
end
local trim_due = stored > 0 and redis.call('XLEN', stream) >= trim_at
return {trim_due and 1 or 0, results}
