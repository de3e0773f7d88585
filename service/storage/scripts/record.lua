-- Apply one attempt's outcome: the delivery's status and attempt log, its indexes and lease,
-- and its webhook's health, together. Safe to repeat: attempt `attempt_number` is logged
-- once, and a repeat answers as the first run did (a command re-sent after a dropped
-- connection). A finished delivery expires after the retention age; deleting those a
-- webhook no longer keeps is the prune's (prune_deliveries.lua): this only says when one
-- is due.
--
-- KEYS[1] delivery: the delivery hash
-- KEYS[2] attempts: its attempt log
-- KEYS[3] pending_index: the webhook's index of pending deliveries
-- KEYS[4] succeeded_index: its index of succeeded deliveries
-- KEYS[5] failed_index: its index of failed deliveries
-- KEYS[6] webhook: the webhook hash
-- KEYS[7] all_index: its index of every delivery
-- KEYS[8] leases: its partition's leased pending deliveries, scored by lease expiry
-- KEYS[9] metrics: its partition's metrics hash, counting the webhooks this disables
-- ARGV[1] owner: who records (the lease holder, or it is "lost")
-- ARGV[2] now_ms: now, in ms since the epoch
-- ARGV[3] verdict: succeeded, retry, failed, gone or abandoned
-- ARGV[4] attempt_json: the attempt to log ("" for none)
-- ARGV[5] next_attempt_ms: when a retry is due
-- ARGV[6] next_owner: who holds the lease for the retry
-- ARGV[7] lease_ms: how long that lease lasts past next_attempt_ms
-- ARGV[8] payload: the body, kept for retries ("" to keep none)
-- ARGV[9] status_code: the endpoint's ("" for none)
-- ARGV[10] last_error: the error kind ("" for none)
-- ARGV[11] disable_after_ms: how long a webhook may fail before it is disabled
-- ARGV[12] member: the delivery's index member
-- ARGV[13] log_length: how many attempts the log keeps
-- ARGV[14] retention_count: how many deliveries of each finished status a webhook keeps
-- ARGV[15] retention_seconds: how long a finished delivery is kept
-- ARGV[16] attempt_number: the number of the attempt in attempt_json
-- ARGV[17] disabled_field: the metrics field of disabled webhooks, but for the reason
-- Returns: {status, prune due (1|0)}: the delivery's status afterwards, "lost" if another
-- worker holds the lease now, or "disabled" when this failure disabled the webhook, active
-- until then (a 410, or failing for longer than disable_after_ms; the delivery is then
-- failed): the worker announces it (webhook.disabled) once; a prune is due when its webhook
-- has more finished deliveries of this status than it keeps, or a finished one older than
-- the retention age.
local delivery, attempts, pending_index = KEYS[1], KEYS[2], KEYS[3]
local succeeded_index, failed_index, webhook = KEYS[4], KEYS[5], KEYS[6]
local all_index, leases, metrics = KEYS[7], KEYS[8], KEYS[9]
local owner, now_ms, verdict, attempt_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local next_attempt_ms, next_owner, lease_ms, payload = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local status_code, last_error, disable_after_ms, member = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local log_length, retention_count, retention_seconds = ARGV[13], ARGV[14], ARGV[15]
local attempt_number, disabled_field = ARGV[16], ARGV[17]

local now = tonumber(now_ms)
if attempt_json ~= '' then
  if tonumber(redis.call('HGET', delivery, 'attempts') or '0') >= tonumber(attempt_number) then
    -- Attempt N is recorded already: this is the same command again (the connection
    -- dropped after Redis ran it and the client re-sent it). Answer as the first run did.
    local status = redis.call('HGET', delivery, 'status')
    if status == 'pending' then
      return {redis.call('HGET', delivery, 'lease_owner') == next_owner and 'pending' or 'lost', 0}
    end
    return {status or 'lost', 0}
  end
  redis.call('RPUSH', attempts, attempt_json)
  redis.call('LTRIM', attempts, -tonumber(log_length), -1)
  redis.call('HINCRBY', delivery, 'attempts', 1)
end
if redis.call('HGET', delivery, 'lease_owner') ~= owner then return {'lost', 0} end
redis.call('HSET', delivery, 'updated_at', now_ms, 'last_status_code', status_code,
  'last_error', last_error)
redis.call('HDEL', delivery, 'lease_owner', 'lease_until', 'next_attempt_at')
local webhook_exists = redis.call('EXISTS', webhook) == 1
local status = 'failed'
local result = nil
if verdict == 'succeeded' then
  status = 'succeeded'
  redis.call('HDEL', delivery, 'payload')
  if webhook_exists then redis.call('HDEL', webhook, 'failing_since') end
else
  if redis.call('HEXISTS', delivery, 'payload') == 0 and payload ~= '' then
    redis.call('HSET', delivery, 'payload', payload)
  end
  if webhook_exists and verdict ~= 'abandoned' then
    redis.call('HSETNX', webhook, 'failing_since', now_ms)
    if verdict == 'gone' then
      if redis.call('HGET', webhook, 'active') == '1' then
        redis.call('HINCRBY', metrics, disabled_field .. 'gone', 1)
        result = 'disabled'
      end
      redis.call('HSET', webhook, 'active', '0', 'disabled_reason', 'gone')
    elseif now - tonumber(redis.call('HGET', webhook, 'failing_since'))
        > tonumber(disable_after_ms) and redis.call('HGET', webhook, 'active') == '1' then
      redis.call('HSET', webhook, 'active', '0', 'disabled_reason', 'failing')
      redis.call('HINCRBY', metrics, disabled_field .. 'failing', 1)
      result = 'disabled'
    end
  end
  if verdict == 'retry' and result == nil then
    local lease_until = tonumber(next_attempt_ms) + tonumber(lease_ms)
    redis.call('HSET', delivery, 'next_attempt_at', next_attempt_ms,
      'lease_owner', next_owner, 'lease_until', lease_until)
    redis.call('ZADD', leases, lease_until, redis.call('HGET', delivery, 'id'))
    return {'pending', 0}
  end
end
redis.call('HSET', delivery, 'status', status)
redis.call('ZREM', leases, redis.call('HGET', delivery, 'id'))
redis.call('ZREM', pending_index, member)
local finished = status == 'succeeded' and succeeded_index or failed_index
redis.call('ZADD', finished, 0, member)
redis.call('EXPIRE', delivery, retention_seconds)
redis.call('EXPIRE', attempts, retention_seconds)
-- Members sort by creation time: an index's first is its oldest.
local cutoff = string.format('%015d', now - tonumber(retention_seconds) * 1000)
local function holds_expired(index)
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  return oldest ~= nil and oldest < cutoff
end
local prune_due = redis.call('ZCARD', finished) > tonumber(retention_count)
  or holds_expired(succeeded_index) or holds_expired(failed_index)
return {result or status, prune_due and 1 or 0}
