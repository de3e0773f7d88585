-- Lift an address's suppression: out of the hash and every set of the account's.
--
-- KEYS[1] suppressions: the account's suppression hash
-- KEYS[2] suppressed: the account's set of every suppressed address
-- KEYS[3..] reason_set: the account's set of each reason
-- ARGV[1] address: in lower case
-- Returns: 1 if it was listed, else 0.
local suppressions, suppressed = KEYS[1], KEYS[2]
local address = ARGV[1]
local removed = redis.call('HDEL', suppressions, address)
redis.call('ZREM', suppressed, address)
local first_reason_set = 3
for i = first_reason_set, #KEYS do
  redis.call('ZREM', KEYS[i], address)
end
return removed
