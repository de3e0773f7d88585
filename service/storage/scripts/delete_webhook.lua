-- Delete a webhook with its account index entry and subscriptions; nothing if it is gone or
-- another account's.
--
-- KEYS[1] webhook: the webhook hash
-- KEYS[2] account_index: the account's webhook ids
-- KEYS[3..] subscriber_set: every subscriber set of the account
-- ARGV[1] webhook_id: its id
-- ARGV[2] account: the account it must belong to
-- Returns: 1 if deleted, 0 if it did not exist (or is another account's).
-- include: _accounts
local webhook, account_index = KEYS[1], KEYS[2]
local webhook_id, account = ARGV[1], ARGV[2]
local first_set = 3

if not owned_by(webhook, account) then return 0 end
redis.call('DEL', webhook)
redis.call('ZREM', account_index, webhook_id)
for k = first_set, #KEYS do redis.call('SREM', KEYS[k], webhook_id) end
return 1
