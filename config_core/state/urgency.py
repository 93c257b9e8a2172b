"""Which outbox stream a change goes to: the Lua that picks its urgency inside the write.

The write script (``values.WRITE_SCRIPT``) appends each event to the outbox stream of its
urgency, decided in the same atomic step from the stored ``integrations.notifications``: the
most urgent trigger that matches the key (glob, as ``config_core.routing.matches``) and names a
configured connector; ``medium`` when none does or no trigger is set. The relay still routes
each event with ``config_core.routing.route``; the stream only decides how soon it is read, so
a relay drains ``high`` before ``medium`` before ``low`` (``workers.outbox_reader``).

``URGENCY_SCRIPT`` runs the same Lua on its own, so tests compare it with ``routing``.
"""

from __future__ import annotations

from string import Template

from config_core.routing import DEFAULT_URGENCY, URGENCIES
from config_core.state.events import OUTBOX_PARTS

_RANKS = ", ".join(f"{name} = {rank}" for rank, name in enumerate(URGENCIES, start=1))
_STREAMS = ", ".join(f"{name} = '{part}'" for name, part in OUTBOX_PARTS.items())

URGENCY_LUA = Template("""
local function glob_pattern(glob)
  -- a Lua pattern matching what Python's fnmatch matches: * ? [seq] [!seq]
  local out, i, n = {'^'}, 1, #glob
  while i <= n do
    local c = string.sub(glob, i, i)
    if c == '*' then
      out[#out + 1] = '.*'
    elseif c == '?' then
      out[#out + 1] = '.'
    elseif c == '[' then
      local j = i + 1
      if string.sub(glob, j, j) == '!' then j = j + 1 end
      if string.sub(glob, j, j) == ']' then j = j + 1 end
      while j <= n and string.sub(glob, j, j) ~= ']' do j = j + 1 end
      if j > n then
        out[#out + 1] = '%['
      else
        local body, negate = string.sub(glob, i + 1, j - 1), ''
        if string.sub(body, 1, 1) == '!' then negate, body = '^', string.sub(body, 2) end
        out[#out + 1] = '[' .. negate .. string.gsub(body, '[%%%^%]]', '%%%0') .. ']'
        i = j
      end
    else
      out[#out + 1] = (string.gsub(c, '%W', '%%%0'))
    end
    i = i + 1
  end
  out[#out + 1] = string.char(36)  -- the end anchor
  return table.concat(out)
end
local urgency_rank = {$ranks}
local outbox_part = {$streams}
local function matches_any(key, patterns)
  if type(patterns) ~= 'table' then return false end
  for _, glob in ipairs(patterns) do
    if type(glob) == 'string' and string.find(key, glob_pattern(glob)) then return true end
  end
  return false
end
local function names_configured(prefix, connectors)
  if type(connectors) ~= 'table' then return false end
  for _, name in ipairs(connectors) do
    if type(name) == 'string' and redis.call('HEXISTS',
        prefix .. '${value_part}integrations.' .. name, 'value') == 1 then return true end
  end
  return false
end
local function urgency_of(prefix, key)
  local stored = redis.call('HGET', prefix .. '${value_part}integrations.notifications', 'value')
  if not stored then return '$default' end
  local ok, notifications = pcall(cjson.decode, stored)
  if not ok or type(notifications) ~= 'table' or type(notifications.triggers) ~= 'table' then
    return '$default'
  end
  local best
  for _, trigger in pairs(notifications.triggers) do
    local urgency = type(trigger) == 'table' and (trigger.urgency or '$default') or nil
    if urgency_rank[urgency] and (not best or urgency_rank[urgency] < urgency_rank[best])
        and matches_any(key, trigger.patterns) and names_configured(prefix, trigger.connectors)
    then
      best = urgency
    end
  end
  return best or '$default'
end
""").safe_substitute(ranks=_RANKS, streams=_STREAMS, default=DEFAULT_URGENCY)
"""Lua defining ``urgency_of(prefix, key)`` and ``outbox_part[urgency]``; ``$value_part`` is
left for ``values`` to fill in."""


def urgency_lua(value_part: str) -> str:
    """``URGENCY_LUA`` for values stored under ``<prefix><value_part><key>``."""
    return Template(URGENCY_LUA).substitute(value_part=value_part)


def urgency_script(value_part: str) -> str:
    """A script answering the urgency of ``ARGV[2]`` in the namespace prefixed ``ARGV[1]``."""
    return urgency_lua(value_part) + "return urgency_of(ARGV[1], ARGV[2])\n"
