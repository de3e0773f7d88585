-- Settle an Idempotency-Key held by a request: keep its response for replay, or release the
-- key (the request failed: a retry may run it again). Only the request whose marker still
-- holds the key settles it; one whose marker lapsed changes nothing.
--
-- KEYS[1] record: the key's record (service.storage.keys.IDEMPOTENCY)
-- ARGV[1] marker: the in-progress marker the request set
-- ARGV[2] response: the sealed response to keep, "" to release the key
-- ARGV[3] ttl_ms: how long to keep the response
-- Returns: 1 if settled, 0 if the marker no longer held the key.
local record = KEYS[1]
local marker, response, ttl_ms = ARGV[1], ARGV[2], ARGV[3]

if redis.call('GET', record) ~= marker then return 0 end
if response == '' then
  redis.call('DEL', record)
else
  redis.call('SET', record, response, 'PX', ttl_ms)
end
return 1
