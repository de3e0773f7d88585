-- Shared by the scripts that handle stream entry ids (included before them).
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_below(a, b)  -- whether entry id a comes before entry id b
  local a_ms, a_seq = parse_id(a)
  local b_ms, b_seq = parse_id(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
-- The oldest entry of `stream` some consumer group still needs: for each group the oldest
-- entry it has read and not acknowledged, else its last-delivered id; nil with no group.
local function oldest_needed(stream)
  local oldest = nil
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local needed = info['last-delivered-id']
    local pending = redis.call('XPENDING', stream, info['name'])
    if pending[1] > 0 then needed = pending[2] end
    if oldest == nil or id_below(needed, oldest) then oldest = needed end
  end
  return oldest
end
local function index_member(id)  -- as service.core.ids.entry_member
  local ms, seq = parse_id(id)
  return string.format('%015d-%010d', ms, seq)
end
