"""Change requests waiting for approval, the expiry index, and the scripts that move them.

A request is a hash (``approval:<id>``) with its status: pending, then approved, rejected,
expired or conflicted. Pending requests are also in a sorted set by the time they expire, which
the relay's sweep reads; every request is in a second sorted set by creation, for listing.

Both scripts embed the write script of ``state.values`` as a Lua function, so a request and its
``approval.requested`` event, or a decision, the change it applies and its ``approval.decided``
event, are one atomic step. A decision names the request's revision (``rev``) it was planned
on; a request that moved meanwhile (another approver, the sweep) answers ``moved`` and the
caller plans again, so two approvers at once cannot apply twice, nor an approval and an expiry
both win.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from string import Template
from typing import Any

from config_core.approvals import PENDING
from config_core.events import APPROVAL_DECIDED, Change, iso, now
from config_core.settings import DEFAULT_MAX_BACKLOG
from config_core.state.events import OUTBOX_PARTS
from config_core.state.keys import Namespace
from config_core.state.values import VALUE_PART, WRITE_SCRIPT, Write, event_only

REQUEST_PART = "approval:"
EXPIRY_PART = "approvals:expiry"
INDEX_PART = "approvals:index"

STATUSES = (PENDING, "approved", "rejected", "expired", "conflicted")
"""A request's statuses; every one but pending is final."""

_JSON_FIELDS = ("approvers", "decisions", "methods", "metadata")


def request_key(ns: Namespace, request_id: str) -> str:
    """Hash: one change request (see ``public``)."""
    return ns.prefix + REQUEST_PART + request_id


def expiry_key(ns: Namespace) -> str:
    """Sorted set of pending request ids (score: when they expire, epoch seconds)."""
    return ns.prefix + EXPIRY_PART


def index_key(ns: Namespace) -> str:
    """Sorted set of every request id (score: when it was made)."""
    return ns.prefix + INDEX_PART


_HEAD = Template("""
local function write(ARGV)
$write
end
local prefix, id = ARGV[1], ARGV[2]
local request = prefix .. '$request_part' .. id
local function store(fields)
  for name, value in pairs(cjson.decode(fields)) do redis.call('HSET', request, name, value) end
end
""")

CREATE_SCRIPT = _HEAD.substitute(write=WRITE_SCRIPT, request_part=REQUEST_PART) + Template("""
-- ARGV: 1 prefix, 2 request id, 3 fields json, 4 expires at, 5 created at,
--       6 the approval.requested event's write script arguments (json list)
if redis.call('EXISTS', request) == 1 then return {'exists'} end
local reply = write(cjson.decode(ARGV[6]))
if reply[1] ~= 'ok' then return reply end
store(ARGV[3])
redis.call('ZADD', prefix .. '$expiry_part', ARGV[4], id)
redis.call('ZADD', prefix .. '$index_part', ARGV[5], id)
return reply
""").substitute(expiry_part=EXPIRY_PART, index_part=INDEX_PART)

DECIDE_SCRIPT = _HEAD.substitute(write=WRITE_SCRIPT, request_part=REQUEST_PART) + Template("""
-- ARGV: 1 prefix, 2 request id, 3 revision the decision was planned on, 4 fields json,
--       5 'apply' when the first write applies the change, 6 writes (json list of argument
--       lists). Every refusal comes before the first write: the outbox is checked for room for
--       every event here, so only the first write (the change, with its expected version) can
--       still refuse.
if (redis.call('HGET', request, 'rev') or '') ~= ARGV[3] then return {'moved'} end
local writes = cjson.decode(ARGV[6])
local backlog = 0
for _, part in ipairs({$outbox_parts}) do
  local outbox = prefix .. part
  local kind = redis.call('TYPE', outbox)['ok']
  if kind ~= 'stream' and kind ~= 'none' then return {'outbox', kind, outbox} end
  if kind == 'stream' then backlog = backlog + redis.call('XLEN', outbox) end
end
local limit = $default_max_backlog
local configured = redis.call('HGET', prefix .. '${value_part}integrations.max_backlog', 'value')
if configured and tonumber(configured) then limit = tonumber(configured) end
if #writes > 0 and backlog + #writes > limit then return {'backlog', backlog, limit} end
local first
for i, args in ipairs(writes) do
  local reply = write(args)
  if reply[1] ~= 'ok' then return reply end
  if i == 1 then first = reply[2] end
end
store(ARGV[4])
if ARGV[5] == 'apply' then redis.call('HSET', request, 'applied_version', first) end
if redis.call('HGET', request, 'status') ~= 'pending' then
  redis.call('ZREM', prefix .. '$expiry_part', id)
end
return {'ok', first or 0}
""").substitute(outbox_parts=", ".join(f"'{part}'" for part in OUTBOX_PARTS.values()),
               default_max_backlog=DEFAULT_MAX_BACKLOG,
               value_part=VALUE_PART, expiry_part=EXPIRY_PART)


def script_args(ns: Namespace, write: Write) -> str:
    """A write's arguments as the JSON list the scripts pass to the embedded write script."""
    return json.dumps([str(arg) for arg in write.args(ns)], ensure_ascii=False)


def create_args(ns: Namespace, request_id: str, fields: dict[str, str], expires_at: float,
                event: Write) -> list[str]:
    """Arguments of ``CREATE_SCRIPT``."""
    return [ns.prefix, request_id, json.dumps(fields, ensure_ascii=False), repr(expires_at),
            fields["created_at"], script_args(ns, event)]


def decide_args(ns: Namespace, request: dict[str, Any], fields: dict[str, Any],
                writes: list[Write], *, apply: bool = False) -> list[str]:
    """Arguments of ``DECIDE_SCRIPT`` for a decision planned on ``request``."""
    stored = {name: json.dumps(value) if name in _JSON_FIELDS else str(value)
              for name, value in fields.items()}
    stored["rev"] = str(request["rev"] + 1)
    writes_json = "[" + ",".join(script_args(ns, w) for w in writes) + "]"
    return [ns.prefix, request["request_id"], str(request["rev"]),
            json.dumps(stored, ensure_ascii=False), "apply" if apply else "", writes_json]


def stored_fields(request: dict[str, Any]) -> dict[str, str]:
    """A new request's hash fields (``public`` reads them back)."""
    return {name: json.dumps(value) if name in _JSON_FIELDS else
            ("1" if value is True else "0" if value is False else str(value))
            for name, value in request.items()}


def public(stored: dict[str, str]) -> dict[str, Any]:
    """A request as callers see it: the value masked, times in ISO 8601 and epoch seconds."""
    request: dict[str, Any] = {name: json.loads(stored[name]) for name in _JSON_FIELDS}
    request.update(
        request_id=stored["request_id"], key=stored["key"], status=stored["status"],
        value=json.loads(stored["masked"]), requested_by=stored["requested_by"] or None,
        reason=stored["reason"] or None, pattern=stored["pattern"],
        min_approvals=int(stored["min_approvals"]), base_version=int(stored["base_version"]),
        local_only=stored["local_only"] == "1", rev=int(stored["rev"]),
        created_at=float(stored["created_at"]), expires_at=float(stored["expires_at"]),
        requested_event_id=stored["requested_event_id"],
        decided_event_id=stored.get("decided_event_id") or None,
        applied_version=int(stored["applied_version"]) if "applied_version" in stored else None)
    request["expires_at_iso"] = _iso(request["expires_at"])
    return request


def value_json(stored: dict[str, str]) -> str:
    """The requested value as stored (unmasked JSON), for applying it."""
    return stored["value"]


def decided_event(ns: Namespace, request: dict[str, Any], outcome: str, by: str | None,
                  reason: str | None = None) -> Write:
    """The ``approval.decided`` event of ``request`` ending in ``outcome``."""
    approvers = [d["approver"] for d in request["decisions"] if d["decision"] == "approve"]
    metadata = {"request_id": request["request_id"], "decision": outcome,
                "approved_by": approvers, "decided_by": by,
                "decisions": request["decisions"], "base_version": request["base_version"],
                "methods": request.get("methods") or []}
    change = Change(APPROVAL_DECIDED, ns.tenant, ns.environment, request["key"],
                    request["value"], by, reason, metadata)
    return event_only(change, json.dumps(request["value"], ensure_ascii=False))


def expiry_plan(ns: Namespace, request: dict[str, Any], at: float) -> list[str] | None:
    """``DECIDE_SCRIPT``'s arguments that expire ``request`` if it is pending and due."""
    if request["status"] != PENDING or request["expires_at"] > at:
        return None
    event = decided_event(ns, request, "expired", None, "approval timed out")
    fields = {"status": "expired", "decided_event_id": event.change.event_id,
              "decided_at": repr(at)}
    return decide_args(ns, request, fields, [event])


def load(client: Any, ns: Namespace, request_id: str) -> dict[str, Any] | None:
    """A request (``public``) or None (sync client)."""
    stored = client.hgetall(request_key(ns, request_id))
    return public(stored) if stored else None


def expire_due(client: Any, ns: Namespace, limit: int = 100) -> int:
    """Expire the pending requests whose time is up (sync client); return how many did.

    A request decided meanwhile answers ``moved`` and is read again: whoever moved it first
    wins, and a request no longer pending just leaves the index.
    """
    at = now().timestamp()
    expired = 0
    decide = client.register_script(DECIDE_SCRIPT)
    for request_id in client.zrangebyscore(expiry_key(ns), "-inf", at, start=0, num=limit):
        for _ in range(5):
            request = load(client, ns, request_id)
            plan = expiry_plan(ns, request, at) if request else None
            if plan is None:
                if not request or request["status"] != PENDING:
                    client.zrem(expiry_key(ns), request_id)
                break
            reply = decide(keys=[], args=plan)
            if reply[0] != "moved":  # ok, or a full outbox: the next sweep tries again
                expired += reply[0] == "ok"
                break
    return expired


def _iso(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))
