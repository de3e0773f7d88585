-- Lift an address's suppression: out of the hash and the account's set of its reason (each
-- reason's set is passed: the reason is only known once the entry is read).
--
-- KEYS[1] suppressions: the account's suppression hash
-- KEYS[2..] reason_set: the account's set of each reason
-- ARGV[1] address: in lower case
-- Returns: 1 if it was listed, else 0.
local suppressions = KEYS[1]
local address = ARGV[1]
local removed = redis.call('HDEL', suppressions, address)
local first_reason_set = 2
for i = first_reason_set, #KEYS do
  redis.call('ZREM', KEYS[i], address)
end
return removed
