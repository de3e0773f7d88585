-- Forget an email id's registration if it is still the given account's (deleting it).
--
-- KEYS[1] owner: the email id's owner key
-- ARGV[1] account: the account being deleted
-- Returns: 1 if forgotten, 0 if it was not that account's (expired, or registered again).
local owner = KEYS[1]
local account = ARGV[1]

if redis.call('GET', owner) ~= account then return 0 end
redis.call('DEL', owner)
return 1
