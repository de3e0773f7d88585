-- Replace a webhook's secret and its previous secrets, if both are still what the caller read
-- (the caller computes the new previous secrets from them: service.core.rotation); nothing if
-- the webhook is gone (a rotation never resurrects it) or another account's.
--
-- KEYS[1] webhook: the webhook hash
-- ARGV[1] account: the account it must belong to
-- ARGV[2] expected_secret: the secret the caller read
-- ARGV[3] expected_previous: the previous secrets the caller read ("" for none)
-- ARGV[4] secret: the new secret
-- ARGV[5] previous: the new previous secrets ("" for none)
-- ARGV[6] updated_at: the time of the change
-- Returns: 1 if rotated, 0 if the webhook does not exist (or is another account's), -1 if
-- its secrets changed since the caller read them (read again and retry).
-- include: _accounts
local webhook = KEYS[1]
local account, expected_secret, expected_previous = ARGV[1], ARGV[2], ARGV[3]
local secret, previous, updated_at = ARGV[4], ARGV[5], ARGV[6]

if not owned_by(webhook, account) then return 0 end
local found = redis.call('HMGET', webhook, 'secret', 'previous_secrets')
if found[1] ~= expected_secret or (found[2] or '') ~= expected_previous then return -1 end
redis.call('HSET', webhook, 'secret', secret, 'previous_secrets', previous,
  'updated_at', updated_at)
return 1
