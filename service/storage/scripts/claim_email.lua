-- Register an email id as an account's, unless another account registered it first (until
-- that registration expires): a registration never moves an email between accounts.
--
-- KEYS[1] owner: the email id's owner key
-- ARGV[1] account: the account registering it
-- ARGV[2] ttl_ms: how long the registration lasts from now
-- Returns: 1 if the email is now the account's (new or renewed), 0 if another account's.
local owner = KEYS[1]
local account, ttl_ms = ARGV[1], ARGV[2]

local current = redis.call('GET', owner)
if current and current ~= account then return 0 end
redis.call('SET', owner, account, 'PX', ttl_ms)
return 1
