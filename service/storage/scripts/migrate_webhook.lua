-- Write a webhook copied by `mailhooks migrate`: its hash as the source holds it (replacing
-- whatever this id held), its account's index entry and its subscriber sets, in one step, so
-- that no webhook is ever half copied and a second run leaves the same state.
--
-- KEYS[1] webhook: the webhook's hash
-- KEYS[2] account_index: the account's webhook ids
-- KEYS[3..] subscriber_set: every subscriber set of the account, in SUBSCRIBER_TYPES order
-- ARGV[1] webhook_id: its id here
-- ARGV[2] pair_count: how many field/value pairs follow
-- ARGV[3..] field, value: the webhook's fields
-- ARGV[..] position: then the 1-based positions (among the subscriber sets) it belongs in
-- Returns: 1
local webhook, account_index = KEYS[1], KEYS[2]
local webhook_id, pair_count = ARGV[1], tonumber(ARGV[2])
local first_set, first_pair, first_position = 3, 3, 3 + 2 * pair_count

redis.call('DEL', webhook)
for i = first_pair, first_position - 1, 2 do redis.call('HSET', webhook, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', account_index, webhook_id, webhook_id)
for k = first_set, #KEYS do redis.call('SREM', KEYS[k], webhook_id) end
for j = first_position, #ARGV do
  redis.call('SADD', KEYS[first_set - 1 + tonumber(ARGV[j])], webhook_id)
end
return 1
