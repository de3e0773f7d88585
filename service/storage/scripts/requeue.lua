-- Back to pending with the lease given to `owner` (a manual retry), unless an attempt is
-- under way (pending, leased, and not merely waiting for its next retry).
--
-- KEYS[1] delivery: the delivery hash
-- KEYS[2] pending_index: the webhook's index of pending deliveries
-- KEYS[3] failed_index: its index of failed deliveries
-- KEYS[4] succeeded_index: its index of succeeded deliveries
-- KEYS[5] leases: its partition's leased pending deliveries, scored by lease expiry
-- KEYS[6] attempts: the delivery's attempt log
-- ARGV[1] owner: who takes the lease
-- ARGV[2] now_ms: now, in ms since the epoch
-- ARGV[3] lease_ms: how long the lease lasts
-- ARGV[4] member: the delivery's index member
-- Returns: 1 if re-queued, 0 if missing or under way.
local delivery, pending_index, failed_index = KEYS[1], KEYS[2], KEYS[3]
local succeeded_index, leases, attempts = KEYS[4], KEYS[5], KEYS[6]
local owner, now_ms, lease_ms, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local status = redis.call('HGET', delivery, 'status')
if not status then return 0 end
local now = tonumber(now_ms)
if status == 'pending' and tonumber(redis.call('HGET', delivery, 'lease_until') or '0') > now
    and tonumber(redis.call('HGET', delivery, 'next_attempt_at') or '0') <= now then
  return 0  -- an attempt is under way (not merely scheduled for later)
end
local lease_until = now + tonumber(lease_ms)
redis.call('ZREM', failed_index, member)
redis.call('ZREM', succeeded_index, member)
redis.call('ZADD', pending_index, 0, member)
redis.call('ZADD', leases, lease_until, redis.call('HGET', delivery, 'id'))
redis.call('PERSIST', delivery)
redis.call('PERSIST', attempts)
redis.call('HSET', delivery, 'status', 'pending', 'lease_owner', owner,
  'lease_until', lease_until, 'updated_at', now_ms)
redis.call('HDEL', delivery, 'next_attempt_at')
return 1
