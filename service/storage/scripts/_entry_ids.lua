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
local function index_member(id)  -- as service.core.ids.entry_member
  local ms, seq = parse_id(id)
  return string.format('%015d-%010d', ms, seq)
end
