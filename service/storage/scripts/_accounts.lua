-- Shared by the webhook scripts: whether a webhook hash exists and belongs to `account`. A
-- webhook with no account field was created before accounts: the default account's.
local function owned_by(webhook, account)
  local found = redis.call('HMGET', webhook, 'id', 'account')
  if not found[1] then return false end
  return (found[2] or 'acc_default') == account
end
