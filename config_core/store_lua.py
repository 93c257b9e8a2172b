"""The one Lua script that applies a change: value, version, history and outbox event at once.

Redis runs a script without interleaving other commands, so two writers never get the same
version. The outbox XADD runs first: if it fails, nothing else has been written.
"""

WRITE_SCRIPT = """
-- KEYS: 1 value hash, 2 index zset, 3 history list, 4 outbox stream, 5 namespaces set,
--       6 max_backlog value hash, 7 connector registry hash
-- ARGV: 1 op (set|delete), 2 key, 3 value json, 4 masked json, 5 expected version or '',
--       6 event head ('' = no event), 7 history head, 8 history max, 9 default max backlog,
--       10 namespace name, 11 old masked json override ('' = stored), 12 registry field,
--       13 registry class path ('' = none)
local op = ARGV[1]
local current = redis.call('HMGET', KEYS[1], 'version', 'masked')
local version = tonumber(current[1]) or 0
if ARGV[5] ~= '' and tonumber(ARGV[5]) ~= version then
  return {'conflict', version}
end
if op == 'delete' and not current[2] then
  return {'missing', version}
end
local old = ARGV[11]
if old == '' then old = current[2] or 'null' end
local new_version = version + 1
if ARGV[6] ~= '' then
  local kind = redis.call('TYPE', KEYS[4])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return {'outbox', kind}
  end
  local limit = tonumber(ARGV[9])
  local configured = redis.call('HGET', KEYS[6], 'value')
  if configured and tonumber(configured) then limit = tonumber(configured) end
  local backlog = redis.call('XLEN', KEYS[4])
  if backlog >= limit then
    return {'backlog', backlog, limit}
  end
  local event = ARGV[6] .. ',"old_value":' .. old .. ',"version":' .. new_version .. '}'
  redis.call('XADD', KEYS[4], '*', 'e', event)
  redis.call('SADD', KEYS[5], ARGV[10])
end
if op == 'delete' then
  redis.call('HDEL', KEYS[1], 'value', 'masked')
  redis.call('HSET', KEYS[1], 'version', new_version)
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[1], 'value', ARGV[3], 'masked', ARGV[4], 'version', new_version)
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
redis.call('LPUSH', KEYS[3], ARGV[7] .. ',"version":' .. new_version .. '}')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
if ARGV[13] ~= '' then
  redis.call('HSET', KEYS[7], ARGV[12], ARGV[13])
end
return {'ok', new_version}
"""
