-- Acknowledge and delete entries of an account's lane once delivered (a lane holds only what
-- is still to deliver); when nothing is left in it, read or unread, delete the lane and take
-- it off its partition's lane index: the account's events queue in the worker again.
--
-- KEYS[1] lane: the account's lane
-- KEYS[2] lanes: its partition's lane index
-- ARGV[1] group: the consumer group
-- ARGV[2] account: the lane's account (its member in the index)
-- ARGV[3..] lane_entry_id: the lane entries delivered
-- Returns: 1 when the lane is gone (empty), else 0.
local lane, lanes = KEYS[1], KEYS[2]
local group, account = ARGV[1], ARGV[2]
local first_entry = 3

if #ARGV >= first_entry then
  redis.call('XACK', lane, group, unpack(ARGV, first_entry))
  redis.call('XDEL', lane, unpack(ARGV, first_entry))
end
if redis.call('XLEN', lane) > 0 then return 0 end
local ok, pending = pcall(redis.call, 'XPENDING', lane, group)
if ok and pending[1] > 0 then return 0 end
redis.call('DEL', lane)
redis.call('ZREM', lanes, account)
return 1
