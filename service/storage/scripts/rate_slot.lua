-- Take the next delivery slot of a rate-limited webhook: GCRA (the generic cell rate
-- algorithm) as a queue. Slots are `interval` = 1 s / per_second apart; after a quiet moment
-- `burst` of them are free at once. A slot is taken even when it lies in the future: the
-- caller waits for that one, then goes without asking again, so that a waiting delivery is
-- never overtaken and each attempt costs one call. The clock is Redis's own (TIME), the one
-- every worker process shares, so that their clocks' drift cannot add to the rate.
--
-- KEYS[1] state: the webhook's theoretical arrival time of its next slot (µs since the epoch)
-- ARGV[1] per_second: the webhook's rate limit (deliveries per second, at least 1)
-- ARGV[2] burst: how many slots may be taken at once after a quiet moment (at least 1)
-- Returns: microseconds from now until the slot taken (0: now).
local state = KEYS[1]
local per_second, burst = tonumber(ARGV[1]), tonumber(ARGV[2])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = 1000000 / per_second
local tat = math.max(tonumber(redis.call('GET', state) or '0'), now)
local slot = math.max(tat - interval * (burst - 1), now)
local next_tat = tat + interval
-- Integer µs (about 1.8e15: exact in a double, but not in Lua's default 14-digit format);
-- once next_tat has passed the state says nothing a missing key does not.
redis.call('SET', state, string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return math.floor(slot - now)
