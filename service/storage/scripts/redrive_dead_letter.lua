-- include: _entry_ids
-- Redrive a dead letter: append its original fields (the event and its account, field a)
-- to the events stream as a new entry, index it as the append does, and delete the dead
-- letter, in one step: it is either still a dead letter or a new event, never both or none.
-- The original entry, if trimming has not removed it yet, goes now with its index members
-- (the same index keys: the same fields), unless a consumer group still needs it (not read
-- yet, or pending): the event is then listed once, under its new id.
--
-- KEYS[1] dead: the dead-letter stream of one partition (every key here is in its slot)
-- KEYS[2] stream: the events stream of the dead letter's partition
-- KEYS[3..] index_key: the email, recipient and account indexes the event belongs in
-- ARGV[1] letter_id: the dead letter's entry id
-- ARGV[2] index_ttl: seconds an index key lasts after its last event
-- Returns: the new entry's id; false if there is no such dead letter; 0 if it holds no
-- original fields (its entry was gone when it was set aside): nothing to redrive.
local dead, stream = KEYS[1], KEYS[2]
local letter_id, index_ttl = ARGV[1], ARGV[2]
local first_index = 3

local function needed_by_a_group(id)
  local groups = redis.call('XINFO', 'GROUPS', stream)
  if #groups == 0 then return true end  -- a group created later reads from the first entry
  for _, group in ipairs(groups) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if id_below(info['last-delivered-id'], id) then return true end
    if #redis.call('XPENDING', stream, info['name'], id, id, 1) > 0 then return true end
  end
  return false
end

local rows = redis.call('XRANGE', dead, letter_id, letter_id)
if #rows == 0 then return false end
local fields, original = {}, nil
local raw = rows[1][2]
for i = 1, #raw, 2 do
  local name = raw[i]
  if string.sub(name, 1, 2) == 'f:' then
    fields[#fields + 1] = string.sub(name, 3)
    fields[#fields + 1] = raw[i + 1]
  elseif name == 'entry' then
    original = raw[i + 1]
  end
end
if #fields == 0 then return 0 end

local remove_original = original ~= nil and redis.call('EXISTS', stream) == 1
  and not needed_by_a_group(original)
local id = redis.call('XADD', stream, '*', unpack(fields))
local member = index_member(id)
for i = first_index, #KEYS do
  redis.call('ZADD', KEYS[i], 0, member)
  redis.call('EXPIRE', KEYS[i], index_ttl)
  if remove_original then redis.call('ZREM', KEYS[i], index_member(original)) end
end
if remove_original then redis.call('XDEL', stream, original) end
redis.call('XDEL', dead, letter_id)
return id
