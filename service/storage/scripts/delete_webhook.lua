-- Delete a webhook with its id index entry and subscriptions.
--
-- KEYS[1] webhook: the webhook hash
-- KEYS[2] webhook_index: every webhook id
-- KEYS[3..] subscriber_set: every subscriber set
-- ARGV[1] webhook_id: its id
-- Returns: 1 if deleted, 0 if it did not exist.
local webhook, webhook_index = KEYS[1], KEYS[2]
local webhook_id = ARGV[1]
local first_set = 3

if redis.call('DEL', webhook) == 0 then return 0 end
redis.call('ZREM', webhook_index, webhook_id)
for k = first_set, #KEYS do redis.call('SREM', KEYS[k], webhook_id) end
return 1
