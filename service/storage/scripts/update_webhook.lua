-- Change a webhook's fields, and move it between subscriber sets if its events changed;
-- nothing if it is gone (an update never resurrects a deleted webhook) or another
-- account's.
--
-- KEYS[1] webhook: the webhook hash
-- KEYS[2..] subscriber_set: every subscriber set of the account, in SUBSCRIBER_TYPES order
-- ARGV[1] webhook_id: its id
-- ARGV[2] account: the account it must belong to
-- ARGV[3] pair_count: how many field/value pairs follow
-- ARGV[4..] field, value: the fields to set ("events" among them if the events changed)
-- ARGV[..] position: then the 1-based positions (among the subscriber sets) to join
-- Returns: 1 if updated, 0 if the webhook does not exist (or is another account's).
-- include: _accounts
local webhook = KEYS[1]
local webhook_id, account, pair_count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local first_set, first_pair, first_position = 2, 4, 4 + 2 * pair_count

if not owned_by(webhook, account) then return 0 end
local events_changed = false
for i = first_pair, first_position - 1, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  redis.call('HSET', webhook, field, value)
  if field == 'events' then events_changed = true end
  if field == 'active' and value == '1' then
    -- Re-enabled by hand: forget why it was disabled and how long it had been failing.
    redis.call('HDEL', webhook, 'disabled_reason', 'failing_since')
  end
end
if events_changed then
  for k = first_set, #KEYS do redis.call('SREM', KEYS[k], webhook_id) end
  for j = first_position, #ARGV do
    redis.call('SADD', KEYS[first_set - 1 + tonumber(ARGV[j])], webhook_id)
  end
end
return 1
