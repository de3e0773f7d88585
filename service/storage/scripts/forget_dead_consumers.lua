-- Delete the group's consumers idle longer than the limit with nothing pending. Checked and
-- deleted in one script: deleting a consumer drops its pending entries from the group, so
-- one that read something between a check and a separate XGROUP DELCONSUMER would lose it.
--
-- KEYS[1] stream: the events stream of one partition (every key here is in its slot)
-- ARGV[1] group: the consumer group
-- ARGV[2] idle_limit_ms: how long a consumer must have been idle to go
-- Returns: the names of the consumers deleted.
local stream = KEYS[1]
local group, idle_limit_ms = ARGV[1], tonumber(ARGV[2])

local deleted = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] > idle_limit_ms then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
    deleted[#deleted + 1] = info['name']
  end
end
return deleted
