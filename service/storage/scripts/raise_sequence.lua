-- Raise a webhook id sequence to a floor, never lower it (`mailhooks migrate`: the ids a
-- deployment issues after a migration must be above every id it copied).
--
-- KEYS[1] sequence: a partition's webhook id sequence
-- ARGV[1] floor: the least value it may have
-- Returns: its value afterwards
local sequence = KEYS[1]
local floor = tonumber(ARGV[1])

local current = tonumber(redis.call('GET', sequence) or '0')
if current >= floor then return current end
redis.call('SET', sequence, floor)
return floor
