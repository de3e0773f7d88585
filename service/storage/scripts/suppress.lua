-- Put one address on an account's suppression list by hand, unless it is listed already.
--
-- KEYS[1] suppressions: the account's suppression hash
-- KEYS[2] suppressed: the account's set of the reason's addresses
-- ARGV[1] address: in lower case
-- ARGV[2] record: the JSON to store for it
-- Returns: {1, record} if added, {0, the record already stored} if it was listed.
local suppressions, suppressed = KEYS[1], KEYS[2]
local address, record = ARGV[1], ARGV[2]
if redis.call('HSETNX', suppressions, address, record) == 0 then
  return {0, redis.call('HGET', suppressions, address)}
end
redis.call('ZADD', suppressed, 0, address)
return {1, record}
