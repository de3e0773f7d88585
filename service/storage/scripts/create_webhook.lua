-- Create a webhook, index it under its account and subscribe it, unless the account has
-- reached its limit of webhooks: the count and the create are one step, so concurrent
-- creates cannot pass the limit together.
--
-- KEYS[1] webhook: the new webhook's hash
-- KEYS[2] account_index: the account's webhook ids
-- KEYS[3..] subscriber_set: the account's subscriber sets of the webhook's event types
-- ARGV[1] webhook_id: its id
-- ARGV[2] limit: how many webhooks the account may have
-- ARGV[3..] field, value: the webhook's fields
-- Returns: 1 if created, 0 if the account is at its limit.
local webhook, account_index = KEYS[1], KEYS[2]
local webhook_id, limit = ARGV[1], tonumber(ARGV[2])
local first_set, first_pair = 3, 3

if redis.call('ZCARD', account_index) >= limit then return 0 end
for i = first_pair, #ARGV, 2 do redis.call('HSET', webhook, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', account_index, webhook_id, webhook_id)
for k = first_set, #KEYS do redis.call('SADD', KEYS[k], webhook_id) end
return 1
