"""Values, versions, history and the one Lua script that applies a change.

Redis runs a script without interleaving other commands, so two writers never get the same
version. Every check that can refuse the change runs before the first write, and the first
write is the outbox XADD: if it fails, nothing else has been written.

The script derives its keys from the namespace prefix instead of taking them as KEYS: each
argument costs the async client measurable time (``python -m bench.diagnose``), and the keys
all follow from the prefix and the storage key. This needs a standalone Redis (not Cluster),
as kombu's Redis transport does anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Template
from typing import Any

from config_core.errors import AccessDenied, IntegrationError
from config_core.events import Change
from config_core.settings import DEFAULT_MAX_BACKLOG, HISTORY_MAX
from config_core.state.directory import ROLES_PART
from config_core.state.events import EVENT_FIELD, outbox_key
from config_core.state.keys import NAMESPACES_KEY, ROOT, Namespace
from config_core.state.urgency import urgency_lua, urgency_script

VALUE_PART = "cfg:"
HISTORY_PART = "history:"
INDEX_PART = "index"
REGISTRY_PART = "connectors"
WRITTEN_PART = "written:"

IDEMPOTENCY_TTL_S = 24 * 3600
"""How long a write's idempotency key is remembered: asking again within this applies nothing."""


def value_key(ns: Namespace, key: str) -> str:
    """Hash with fields value (JSON), masked (JSON) and version."""
    return ns.prefix + VALUE_PART + key


def history_key(ns: Namespace, key: str) -> str:
    """List of history entries, newest first."""
    return ns.prefix + HISTORY_PART + key


def notes_key(ns: Namespace, key: str) -> str:
    """Hash: version → JSON list of notes added after the change (e.g. a build result)."""
    return ns.key("notes", key)


def index_key(ns: Namespace) -> str:
    """Sorted set of every key that has a value (for prefix listing)."""
    return ns.prefix + INDEX_PART


def written_key(ns: Namespace, idempotency_key: str) -> str:
    """``version event_id`` of the write made with ``idempotency_key``."""
    return ns.prefix + WRITTEN_PART + idempotency_key


def registry_key(ns: Namespace) -> str:
    """Hash: custom connector name → importable class path."""
    return ns.prefix + REGISTRY_PART


def decode(text: str | None) -> Any:
    """A stored value's JSON decoded; None when there is none."""
    return json.loads(text) if text else None


def read_json(client: Any, ns: Namespace, key: str) -> Any:
    """The stored value of ``key`` decoded, or None (sync client)."""
    return decode(client.hget(value_key(ns, key), "value"))


def has_value(client: Any, ns: Namespace, key: str) -> bool:
    """True when ``key`` has a value (sync client)."""
    return bool(client.hexists(value_key(ns, key), "value"))


_APPEND_NOTE = """
local notes = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]) or '[]')
table.insert(notes, cjson.decode(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(notes))
"""


def add_note(client: Any, ns: Namespace, key: str, version: int, note: dict[str, Any]) -> None:
    """Attach ``note`` to version ``version`` of ``key`` (shown by ``history``)."""
    client.eval(_APPEND_NOTE, 1, notes_key(ns, key), str(version), json.dumps(note))


WRITE_SCRIPT = Template("""
-- ARGV: 1 namespace prefix 'apgcfg:{tenant}:{env}:', 2 op (set|delete|event), 3 storage key,
--       4 value json, 5 masked json ('' = same as the value), 6 event head ('' = no event),
--       7 history head, 8 versions of integrations.schemas and integrations.approvals the
--       value was checked against ('<schemas>:<approvals>'),
--       9 who asks (changed_by, '' = nobody), 10 idempotency key ('' = none), 11 event id;
--       optional: 12 expected version, 13 old masked json override, 14 registry field,
--       15 registry class path
-- With an idempotency key a second run changes nothing and answers {'done', 'version event_id'}
-- of the first (a caller whose reply was lost asks again).
-- op 'event' records only the event (config.error, deployment.finished, ...).
-- The event goes to the outbox stream of its urgency (see config_core.state.urgency).
$urgency_lua
local prefix, op, key = ARGV[1], ARGV[2], ARGV[3]
local written = ''
if ARGV[10] and ARGV[10] ~= '' then written = prefix .. '$written_part' .. ARGV[10] end
if written ~= '' then
  local done = redis.call('GET', written)
  if done then return {'done', done} end
end
local value_key = prefix .. '$value_part' .. key
local masked = ARGV[5]
if masked == '' then masked = ARGV[4] end
local current = redis.call('HMGET', value_key, 'version', 'masked')
local version = tonumber(current[1]) or 0
local schemas = (redis.call('HGET', prefix .. '${value_part}integrations.schemas', 'version')
  or '0') .. ':' .. (redis.call('HGET', prefix .. '${value_part}integrations.approvals',
  'version') or '0')
if op == 'set' and schemas ~= ARGV[8] then
  return {'schemas', schemas}
end
if op ~= 'event' then
  local access = redis.call('HGET', prefix .. '${value_part}integrations.access', 'value')
  if access and cjson.decode(access)['enforce'] == true then
    local rank = {read = 1, write = 2, admin = 3}
    local role = redis.call('HGET', prefix .. '$roles_part', string.lower(ARGV[9])) or ''
    local needed = 'write'
    if string.sub(key, 1, 13) == 'integrations.' then needed = 'admin' end
    if (rank[role] or 0) < rank[needed] then
      return {'denied', role, needed}
    end
  end
end
if ARGV[12] and ARGV[12] ~= '' and tonumber(ARGV[12]) ~= version then
  return {'conflict', version}
end
if op == 'delete' and not current[2] then
  return {'missing', version}
end
local old = ARGV[13]
if not old or old == '' then old = current[2] or 'null' end
local new_version = version + 1
if op == 'event' then new_version = version end
if ARGV[6] ~= '' then
  local outbox = prefix .. outbox_part[urgency_of(prefix, key)]
  local kind = redis.call('TYPE', outbox)['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return {'outbox', kind, outbox}
  end
  local limit = $default_max_backlog
  local configured = redis.call('HGET', prefix .. '${value_part}integrations.max_backlog', 'value')
  if configured and tonumber(configured) then limit = tonumber(configured) end
  local backlog = 0
  for _, part in pairs(outbox_part) do
    local length = redis.pcall('XLEN', prefix .. part)  -- 0 when missing, an error if no stream
    if type(length) == 'number' then backlog = backlog + length end
  end
  if backlog >= limit then
    return {'backlog', backlog, limit}
  end
  local event = ARGV[6] .. ',"old_value":' .. old .. ',"version":' .. new_version .. '}'
  redis.call('XADD', outbox, '*', '$event_field', event)
  redis.call('SADD', '$namespaces', string.sub(prefix, $root_len, -2))
end
if written ~= '' then
  redis.call('SET', written, new_version .. ' ' .. ARGV[11], 'EX', $idempotency_ttl_s)
end
if op == 'event' then
  return {'ok', new_version}
end
if op == 'delete' then
  redis.call('HDEL', value_key, 'value', 'masked')
  redis.call('HSET', value_key, 'version', new_version)
  redis.call('ZREM', prefix .. '$index_part', key)
else
  redis.call('HSET', value_key, 'value', ARGV[4], 'masked', masked, 'version', new_version)
  redis.call('ZADD', prefix .. '$index_part', 0, key)
end
local history = prefix .. '$history_part' .. key
redis.call('LPUSH', history, ARGV[7] .. ',"version":' .. new_version .. '}')
redis.call('LTRIM', history, 0, $history_max - 1)
if ARGV[15] and ARGV[15] ~= '' then
  redis.call('HSET', prefix .. '$registry_part', ARGV[14], ARGV[15])
end
return {'ok', new_version}
""").substitute(
    default_max_backlog=DEFAULT_MAX_BACKLOG,
    history_max=HISTORY_MAX,
    namespaces=NAMESPACES_KEY,
    root_len=len(ROOT) + 2,
    value_part=VALUE_PART, history_part=HISTORY_PART, index_part=INDEX_PART,
    registry_part=REGISTRY_PART, roles_part=ROLES_PART, urgency_lua=urgency_lua(VALUE_PART),
    event_field=EVENT_FIELD, written_part=WRITTEN_PART, idempotency_ttl_s=IDEMPOTENCY_TTL_S,
)


@dataclass(frozen=True)
class Write:
    """Everything the write script needs for one change."""

    op: str
    storage_key: str
    value_json: str
    masked_json: str
    change: Change
    masked_event_json: str
    emit: bool
    schemas_version: str = "0:0"
    """``<integrations.schemas version>:<integrations.approvals version>`` checked against."""
    expected_version: int | None = None
    old_masked_json: str = ""
    registry: tuple[str, str] | None = None

    def args(self, ns: Namespace) -> list[str | int]:
        """The write script's arguments (the optional tail only when it is needed)."""
        change = self.change
        args: list[str | int] = [
            ns.prefix, self.op, self.storage_key, self.value_json,
            "" if self.masked_json == self.value_json else self.masked_json,
            change.event_head(self.masked_event_json) if self.emit else "",
            "" if self.op == "event" else
            change.history_head(masked_value_json=self.masked_json, local_only=not self.emit),
            self.schemas_version, change.changed_by or "", change.idempotency_key,
            change.event_id if change.idempotency_key else ""]
        if self.expected_version is not None or self.old_masked_json or self.registry:
            args += ["" if self.expected_version is None else self.expected_version,
                     self.old_masked_json, *(self.registry or ("", ""))]
        return args


URGENCY_SCRIPT = urgency_script(VALUE_PART)
"""The write script's choice of urgency on its own: ARGV 1 namespace prefix, 2 key."""


def event_only(change: Change, masked_value_json: str) -> Write:
    """A write that records only an event (config.error, deployment.finished, ...)."""
    return Write("event", change.key, "null", masked_value_json, change, masked_value_json,
                 emit=True)


@dataclass(frozen=True)
class Applied:
    """A write that took effect: the key's new version and the event it recorded."""

    version: int
    event_id: str | None
    repeated: bool = False
    """True when the idempotency key had been applied before: this call changed nothing."""


def write_sync(client: Any, ns: Namespace, write: Write) -> Applied:
    """Apply ``write`` from synchronous code (workers); same script, same refusals."""
    reply = client.register_script(WRITE_SCRIPT)(keys=[], args=write.args(ns))
    return applied_from(reply, ns, write)


def parse_done(text: str) -> Applied:
    """An idempotency key's record: ``version event_id``."""
    version, _, event_id = text.partition(" ")
    return Applied(int(version), event_id or None, repeated=True)


def applied_from(reply: list[Any], ns: Namespace, write: Write) -> Applied:
    """What the script's reply means: the write applied, or the exception its refusal means."""
    key, status = write.change.key, reply[0]
    if status == "ok":
        return Applied(int(reply[1]), write.change.event_id if write.emit else None)
    if status == "done":
        return parse_done(reply[1])
    if status == "conflict":
        raise Conflict(key)
    if status == "missing":
        raise Missing(key)
    if status == "schemas":
        raise SchemasChanged(str(reply[1]))
    if status == "denied":
        raise AccessDenied(key, role=reply[1] or None, needed=reply[2])
    if status == "backlog":
        raise IntegrationError(
            f"change to {key!r} was not applied: the outbox holds {reply[1]} undelivered "
            f"events (integrations.max_backlog is {reply[2]}); are the workers running?"
        )
    outbox = reply[2] if len(reply) > 2 else outbox_key(ns)
    raise IntegrationError(
        f"change to {key!r} was not applied: outbox {outbox!r} is a {reply[1]}, not a stream"
    )


class Conflict(Exception):
    """The key's version moved between a read and a conditional write."""


class Missing(Exception):
    """Delete of a key that has no value."""


class SchemasChanged(Exception):
    """``integrations.schemas`` or ``integrations.approvals`` changed since the value was
    checked; check again."""

    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.version = version
