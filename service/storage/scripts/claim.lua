-- Create a delivery, or take its lease if it is pending and free (or held by this owner).
--
-- KEYS[1] delivery: the delivery hash
-- KEYS[2] all_index: the webhook's index of every delivery
-- KEYS[3] pending_index: the webhook's index of pending deliveries
-- KEYS[4] leases: its partition's leased pending deliveries, scored by lease expiry
-- KEYS[5] webhook: the webhook's hash (read only: is it still active?)
-- ARGV[1] delivery_id: the delivery's id
-- ARGV[2] webhook_id: its webhook
-- ARGV[3] event_id: its event
-- ARGV[4] event_type: the event's type
-- ARGV[5] now_ms: now, in ms since the epoch
-- ARGV[6] lease_ms: how long the lease lasts
-- ARGV[7] owner: who takes the lease
-- ARGV[8] payload: the body to keep with the delivery ("" to keep none)
-- ARGV[9] member: the delivery's index member
-- Returns: {"new"|"go"|"skip", attempts made (new, go) or status (skip), created at ms,
-- the webhook's active flag now: "1", "0", or "" when it is gone}. The flag is read here,
-- in the same round trip, so that no request leaves for a webhook disabled (by a 410, by
-- failing too long, by hand) since its subscribers were looked up.
local delivery, all_index, pending_index, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local webhook = KEYS[5]
local active = redis.call('HGET', webhook, 'active') or ''
local delivery_id, webhook_id, event_id, event_type = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now_ms, lease_ms, owner, payload, member = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local now, lease_until = tonumber(now_ms), tonumber(now_ms) + tonumber(lease_ms)
local status = redis.call('HGET', delivery, 'status')
if not status then
  redis.call('HSET', delivery, 'id', delivery_id, 'webhook_id', webhook_id,
    'event_id', event_id, 'type', event_type, 'status', 'pending', 'attempts', 0,
    'created_at', now_ms, 'updated_at', now_ms, 'lease_owner', owner,
    'lease_until', lease_until)
  if payload ~= '' then redis.call('HSET', delivery, 'payload', payload) end
  redis.call('ZADD', all_index, 0, member)
  redis.call('ZADD', pending_index, 0, member)
  redis.call('ZADD', leases, lease_until, delivery_id)
  return {'new', '0', now_ms, active}
end
if status ~= 'pending' then return {'skip', status, '0', active} end
local holder = redis.call('HGET', delivery, 'lease_owner')
local held_until = tonumber(redis.call('HGET', delivery, 'lease_until') or '0')
if holder ~= owner and held_until > now then return {'skip', 'leased', '0', active} end
redis.call('HSET', delivery, 'lease_owner', owner, 'lease_until', lease_until)
redis.call('ZADD', leases, lease_until, delivery_id)
if payload ~= '' and redis.call('HEXISTS', delivery, 'payload') == 0 then
  redis.call('HSET', delivery, 'payload', payload)
end
local attempts = redis.call('HGET', delivery, 'attempts')
return {'go', attempts, redis.call('HGET', delivery, 'created_at'), active}
