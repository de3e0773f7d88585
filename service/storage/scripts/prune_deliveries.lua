-- include: _entry_ids
-- Delete the finished deliveries a webhook no longer keeps, planned by DeliveryStore.prune:
-- each candidate is checked again, as it may have changed since the plan. A pending one
-- (re-queued meanwhile) stays; a finished one goes if it is older than the retention age or
-- beyond the newest `retention_count` of its status now; one whose record has gone (expired)
-- leaves its index members. Each goes with its attempt log and index members.
-- Whatever the retention settings, a delivery of a stream entry that the delivery group
-- still needs (not read yet, or read and not acknowledged: a crashed worker's, waiting to
-- be reclaimed) stays: its record is what tells the worker that reclaims the entry that
-- this delivery is done, so that it is not sent again.
--
-- KEYS[1] all_index: the webhook's index of every delivery
-- KEYS[2] succeeded_index: its index of succeeded deliveries
-- KEYS[3] failed_index: its index of failed deliveries
-- KEYS[4] stream: the events stream the deliveries' entries are in (their partition's)
-- KEYS[5] lane: the webhook's account's lane (service.storage.lanes): the entries waiting
--   there are acknowledged in the stream, yet a worker may still hand them out again
-- KEYS[6..] delivery, attempts: for each candidate, its hash and attempt log
-- ARGV[1] retention_count: how many deliveries of each finished status the webhook keeps
-- ARGV[2] cutoff: the index member bound of the retention age (older members go)
-- ARGV[3..] member: for each candidate, in the same order, its index member
-- Returns: the number of deliveries deleted.
local all_index, succeeded_index, failed_index, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local lane = KEYS[5]
local retention_count, cutoff = tonumber(ARGV[1]), ARGV[2]
local first_candidate_key, first_member = 6, 3
local needed = redis.call('EXISTS', stream) == 1 and oldest_needed(stream) or nil
-- The lane's oldest entry, by its original entry id: from there on (a lane is filled in
-- stream order, roughly) an entry may still be handed out, so its deliveries' records stay.
local head = redis.call('XRANGE', lane, '-', '+', 'COUNT', 1)
if #head > 0 then
  local raw = head[1][2]
  for i = 1, #raw, 2 do
    if raw[i] == 'id' and (needed == nil or id_below(raw[i + 1], needed)) then
      needed = raw[i + 1]
    end
  end
end

-- Whether the group may still hand out the member's stream entry (a test delivery has none).
local function entry_still_needed(member)
  local entry = string.match(member, ':dlv_(%d+%-%d+)_%d+$')
  return entry ~= nil and needed ~= nil and not id_below(entry, needed)
end

local function beyond_kept(index, member)
  local rank = redis.call('ZRANK', index, member)
  return rank ~= false and rank < redis.call('ZCARD', index) - retention_count
end

local deleted = 0
for i = first_member, #ARGV do
  local k = first_candidate_key + 2 * (i - first_member)
  local delivery, attempts, member = KEYS[k], KEYS[k + 1], ARGV[i]
  local status = redis.call('HGET', delivery, 'status')
  local index = status == 'succeeded' and succeeded_index or failed_index
  if not entry_still_needed(member) and (not status or (status ~= 'pending'
      and (member < cutoff or beyond_kept(index, member)))) then
    redis.call('DEL', delivery, attempts)
    redis.call('ZREM', succeeded_index, member)
    redis.call('ZREM', failed_index, member)
    deleted = deleted + redis.call('ZREM', all_index, member)
  end
end
return deleted
