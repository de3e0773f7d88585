-- Move events stream entries a worker will not hold in memory to their account's lane
-- (service.core.fairness, docs/delivery.md): copy each, with its entry id, to the lane and
-- acknowledge it in the group in one step, so that it is neither lost nor delivered from
-- both. An entry gone from the stream (deleted by hand) is only acknowledged. A lane is
-- created with its group when missing and listed in its partition's lane index.
--
-- KEYS[1] stream: the partition's events stream
-- KEYS[2] lanes: the partition's lane index
-- KEYS[3..] lane: for each entry, its account's lane (in the same partition)
-- ARGV[1] group: the consumer group, of the stream and of every lane
-- ARGV[2] now_ms: the lane index's score for a lane listed now
-- ARGV[3..] entry_id, account: for each entry, in order
-- Returns: how many entries were copied.
local stream, lanes = KEYS[1], KEYS[2]
local group, now_ms = ARGV[1], ARGV[2]
local first_lane, first_entry = 3, 3

local copied = 0
for i = 0, #KEYS - first_lane do
  local lane = KEYS[first_lane + i]
  local entry_id, account = ARGV[first_entry + 2 * i], ARGV[first_entry + 2 * i + 1]
  local rows = redis.call('XRANGE', stream, entry_id, entry_id)
  if #rows > 0 then
    if redis.call('EXISTS', lane) == 0 then
      redis.call('XGROUP', 'CREATE', lane, group, '0', 'MKSTREAM')
    end
    redis.call('ZADD', lanes, 'NX', now_ms, account)
    local command = {'XADD', lane, '*', 'id', entry_id}
    for _, value in ipairs(rows[1][2]) do command[#command + 1] = value end
    redis.call(unpack(command))
    copied = copied + 1
  end
  redis.call('XACK', stream, group, entry_id)
end
return copied
