"""The one Lua script that applies a change: value, version, history and outbox event at once.

Redis runs a script without interleaving other commands, so two writers never get the same
version. Every check that can refuse the change runs before the first write, and the first
write is the outbox XADD: if it fails, nothing else has been written.

The script derives its keys from the namespace prefix instead of taking them as KEYS: each
argument costs the async client measurable time (``python -m bench.diagnose``), and the seven
keys all follow from the prefix and the storage key. This needs a standalone Redis (not
Cluster), as kombu's Redis transport does anyway.
"""

from string import Template

from config_core.layout import NAMESPACES_KEY, ROOT
from config_core.settings import DEFAULT_MAX_BACKLOG, HISTORY_MAX

WRITE_SCRIPT = Template("""
-- ARGV: 1 namespace prefix 'apgcfg:{tenant}:{env}:', 2 op (set|delete|event), 3 storage key,
--       4 value json, 5 masked json ('' = same as the value), 6 event head ('' = no event),
--       7 history head, 8 version of integrations.schemas the value was checked against,
--       9 who asks (changed_by, '' = nobody); optional: 10 expected version,
--       11 old masked json override, 12 registry field, 13 registry class path
-- op 'event' records only the event (config.error, deployment.finished, ...).
local prefix, op, key = ARGV[1], ARGV[2], ARGV[3]
local value_key = prefix .. 'cfg:' .. key
local outbox = prefix .. 'outbox'
local masked = ARGV[5]
if masked == '' then masked = ARGV[4] end
local current = redis.call('HMGET', value_key, 'version', 'masked')
local version = tonumber(current[1]) or 0
local schemas = redis.call('HGET', prefix .. 'cfg:integrations.schemas', 'version') or '0'
if op == 'set' and schemas ~= ARGV[8] then
  return {'schemas', schemas}
end
if op ~= 'event' then
  local access = redis.call('HGET', prefix .. 'cfg:integrations.access', 'value')
  if access and cjson.decode(access)['enforce'] == true then
    local rank = {read = 1, write = 2, admin = 3}
    local role = redis.call('HGET', prefix .. 'roles', string.lower(ARGV[9])) or ''
    local needed = 'write'
    if string.sub(key, 1, 13) == 'integrations.' then needed = 'admin' end
    if (rank[role] or 0) < rank[needed] then
      return {'denied', role, needed}
    end
  end
end
if ARGV[10] and ARGV[10] ~= '' and tonumber(ARGV[10]) ~= version then
  return {'conflict', version}
end
if op == 'delete' and not current[2] then
  return {'missing', version}
end
local old = ARGV[11]
if not old or old == '' then old = current[2] or 'null' end
local new_version = version + 1
if op == 'event' then new_version = version end
if ARGV[6] ~= '' then
  local kind = redis.call('TYPE', outbox)['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return {'outbox', kind}
  end
  local limit = $default_max_backlog
  local configured = redis.call('HGET', prefix .. 'cfg:integrations.max_backlog', 'value')
  if configured and tonumber(configured) then limit = tonumber(configured) end
  local backlog = redis.call('XLEN', outbox)
  if backlog >= limit then
    return {'backlog', backlog, limit}
  end
  local event = ARGV[6] .. ',"old_value":' .. old .. ',"version":' .. new_version .. '}'
  redis.call('XADD', outbox, '*', 'e', event)
  redis.call('SADD', '$namespaces', string.sub(prefix, $root_len, -2))
end
if op == 'event' then
  return {'ok', new_version}
end
if op == 'delete' then
  redis.call('HDEL', value_key, 'value', 'masked')
  redis.call('HSET', value_key, 'version', new_version)
  redis.call('ZREM', prefix .. 'index', key)
else
  redis.call('HSET', value_key, 'value', ARGV[4], 'masked', masked, 'version', new_version)
  redis.call('ZADD', prefix .. 'index', 0, key)
end
local history = prefix .. 'history:' .. key
redis.call('LPUSH', history, ARGV[7] .. ',"version":' .. new_version .. '}')
redis.call('LTRIM', history, 0, $history_max - 1)
if ARGV[13] and ARGV[13] ~= '' then
  redis.call('HSET', prefix .. 'connectors', ARGV[12], ARGV[13])
end
return {'ok', new_version}
""").substitute(
    default_max_backlog=DEFAULT_MAX_BACKLOG,
    history_max=HISTORY_MAX,
    namespaces=NAMESPACES_KEY,
    root_len=len(ROOT) + 2,
)
