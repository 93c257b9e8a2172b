"""The delivery ledger: one row per (event, connector), in a Redis hash per event.

Every change of a row goes through this module, and the changes that race go through a script:

- ``open_rows``: the relay records each routed delivery as ``pending`` (never over an existing
  row, so a relay that dispatches an entry twice changes nothing).
- ``open_batched``: ``pending`` (or no row) becomes ``batched``; returns the events that moved,
  so an event already buffered, delivered or dead is never buffered again.
- ``claim``: an attempt takes the delivery with a compare-and-set of the row it read and the
  lease, so it decides on what is stored now; the attempt is counted before anything is sent,
  and an attempt that never finished (its process died) is reported as ``in_doubt``.
- ``finish``: the outcome is written before the lease is released; a delivered or skipped row
  is never moved back. The same script counts the outcome for the metrics (``counters``).
- ``reset``: a replay starts the delivery over.

Rows still ``pending`` or ``retrying`` are also listed in a sorted set by the time they are due,
so the reconciler finds deliveries whose task was lost and publishes them again.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from redis.commands.core import Script

from config_core import settings
from config_core.state import counters
from config_core.state.keys import Namespace


class Status(StrEnum):
    """Where a delivery stands."""

    PENDING = "pending"
    RETRYING = "retrying"
    BATCHED = "batched"
    """Waiting in a connector's buffer for its batch to be flushed."""
    WAITING = "waiting"
    """Waiting in its paused connector's line (see ``state.health``); not attempted."""
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    DEAD = "dead"


NOT_ATTEMPTED = frozenset({Status.DELIVERED, Status.SKIPPED, Status.BATCHED, Status.DEAD,
                           Status.WAITING})
"""Statuses after which a delivery task does nothing (a replay resets the row first)."""

STICKY = frozenset({Status.DELIVERED, Status.SKIPPED})
"""Statuses no later outcome overwrites (only a replay does)."""

OPEN = frozenset({Status.PENDING, Status.RETRYING})
"""Statuses that are listed as due, for the reconciler."""

DETAIL_SUFFIX = "#detail"
"""Ledger hash field ``<connector>#detail``: notes added after a delivery ended."""

DUE_GRACE_S = float(os.environ.get("APGCFG_RECONCILE_AFTER_S", "120"))
"""A pending row is due this long after it was opened, a retrying one this long after its next
attempt: if its task has not run by then, the reconciler publishes it again
(``APGCFG_RECONCILE_AFTER_S``)."""


@dataclass
class LedgerRow:
    """What the ledger keeps for one delivery."""

    connector: str
    urgency: str
    status: Status = Status.PENDING
    attempts: int = 0
    last_error: str | None = None
    error_kind: str | None = None
    """Why the last attempt failed, in a word (``rate_limited``, ``auth``, ...): the metrics'
    ``reason``."""
    created_at: float = 0.0
    updated_at: float = 0.0
    delivered_at: float | None = None
    next_attempt_at: float | None = None
    first_failure_at: float | None = None
    claim: str | None = None
    """Token of the attempt in progress; set by ``claim``, cleared by ``finish``."""
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, connector: str, urgency: str, status: Status = Status.PENDING) -> LedgerRow:
        moment = time.time()
        return cls(connector, urgency, status, created_at=moment, updated_at=moment)

    @classmethod
    def from_json(cls, text: str) -> LedgerRow:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in json.loads(text).items() if k in known}
        row = cls(**data)
        row.status = Status(row.status)
        return row

    def to_json(self) -> str:
        # a shallow dict: asdict() deep-copies ``detail`` only to serialize it, and rows are
        # written for every delivery (a batch writes one per event)
        return json.dumps({name: getattr(self, name) for name in _ROW_FIELDS}, allow_nan=False)

    def public(self) -> dict[str, Any]:
        """The row as ``get_deliveries`` shows it."""
        shown = asdict(self)
        shown["status"] = str(self.status)
        shown.pop("claim")
        return shown

    def mark(self, status: Status, error: str | None = None,
             retry_in_s: float | None = None, kind: str | None = None) -> LedgerRow:
        """Move to ``status``, stamping the time (and the error, its kind, or the next
        attempt)."""
        self.status = status
        self.updated_at = time.time()
        if error is not None or status == Status.DELIVERED:
            self.last_error = error
            self.error_kind = kind if error is not None else None
        if status == Status.DELIVERED:
            self.delivered_at = self.updated_at
        if status == Status.RETRYING and self.first_failure_at is None:
            self.first_failure_at = self.updated_at
        self.next_attempt_at = (self.updated_at + retry_in_s
                                if retry_in_s is not None and math.isfinite(retry_in_s) else None)
        self.claim = None
        return self


_ROW_FIELDS = tuple(f.name for f in fields(LedgerRow))
"""Field names of a ledger row, in order (its JSON)."""

def rows_key(ns: Namespace, event_id: str) -> str:
    """Hash: connector name → ledger row (JSON), plus ``<connector>#detail`` notes."""
    return ns.key("deliveries", event_id)


def dead_key(ns: Namespace) -> str:
    """Sorted set of ``event_id:connector`` deliveries that went dead (score: when)."""
    return ns.key("dead")


def due_key(ns: Namespace) -> str:
    """Sorted set of ``event_id|connector`` open deliveries (score: when they are due)."""
    return ns.key("due")


def lease_key(ns: Namespace, event_id: str, connector: str) -> str:
    """Held by the attempt sending a delivery (its value: the attempt's token)."""
    return ns.key("lease", event_id, connector)


FOLLOW_UP = "follow_up"
"""Due-index kind (and detail field) of a connector's follow-up of a delivery."""


def due_member(event_id: str, connector: str, kind: str = "") -> str:
    return f"{event_id}|{connector}|{kind}" if kind else f"{event_id}|{connector}"


def parse_due_member(member: str) -> tuple[str, str, str]:
    """(event id, connector, kind): kind is "" for a delivery, ``FOLLOW_UP`` for a follow-up."""
    event_id, _, rest = member.partition("|")
    connector, _, kind = rest.partition("|")
    return event_id, connector, kind


def _script(text: str) -> Script:
    """A script run by SHA on whichever client (or pipeline) a call passes; redis-py loads it
    again when Redis lost it (a restart, SCRIPT FLUSH)."""
    return Script(None, text.encode())  # type: ignore[arg-type]  # the client comes per call


# Opening rows ---------------------------------------------------------------------------------

def open_rows(pipe: Any, ns: Namespace, event_id: str, routes: dict[str, str]) -> None:
    """Record each routed delivery as pending (queued on ``pipe``; existing rows are kept)."""
    key = rows_key(ns, event_id)
    due_at = time.time() + DUE_GRACE_S
    for name, urgency in routes.items():
        pipe.hsetnx(key, name, LedgerRow.new(name, urgency).to_json())
        pipe.zadd(due_key(ns), {due_member(event_id, name): due_at}, nx=True)
    pipe.expire(key, settings.EVENT_TTL_S)


_OPEN_BATCHED = """
-- KEYS: 1 due zset; ARGV: 1 connector, 2 ttl, 3.. triples (rows key, event id, row json)
local moved = {}
for i = 3, #ARGV, 3 do
  local current = redis.call('HGET', ARGV[i], ARGV[1])
  local status = current and cjson.decode(current)['status'] or 'pending'
  if status == 'pending' then
    redis.call('HSET', ARGV[i], ARGV[1], ARGV[i + 2])
    redis.call('EXPIRE', ARGV[i], tonumber(ARGV[2]))
    redis.call('ZREM', KEYS[1], ARGV[i + 1] .. '|' .. ARGV[1])
    table.insert(moved, ARGV[i + 1])
  end
end
return moved
"""
_OPEN_BATCHED_SCRIPT = _script(_OPEN_BATCHED)


def open_batched(client: Any, ns: Namespace, connector: str,
                 pairs: list[tuple[str, str]]) -> list[str]:
    """Mark events (id, urgency) as waiting in ``connector``'s buffer; return the ids that
    were pending (or had no row): only those may be buffered."""
    args: list[Any] = [connector, settings.EVENT_TTL_S]
    for event_id, urgency in pairs:
        row = LedgerRow.new(connector, urgency, Status.BATCHED)
        args += [rows_key(ns, event_id), event_id, row.to_json()]
    moved: Any = _OPEN_BATCHED_SCRIPT([due_key(ns)], args, client)
    return list(moved)


# Attempts ---------------------------------------------------------------------------------------

_CLAIM = """
-- KEYS: 1 rows hash, 2 lease, 3 due zset
-- ARGV: 1 connector, 2 token, 3 lease ms, 4 row as read ('' = none), 5 claimed row,
--       6 due member, 7 due score, 8 ttl s
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[4] then return {'changed', current} end
local held = redis.call('GET', KEYS[2])
if held then return {'busy', tostring(redis.call('PTTL', KEYS[2]))} end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
redis.call('ZADD', KEYS[3], tonumber(ARGV[7]), ARGV[6])
return {'claimed', ''}
"""
_CLAIM_SCRIPT = _script(_CLAIM)

CLAIM_ROUNDS = 5
"""Times ``claim`` reads a row again that changed under it before it reports ``busy``."""


@dataclass(frozen=True)
class Claim:
    """What ``claim`` found: ``kind`` is claimed, in_doubt, busy or final."""

    kind: str
    row: LedgerRow | None = None
    token: str = ""
    busy_for_s: float = 0.0


def claim(client: Any, ns: Namespace, event_id: str, connector: str, urgency: str,
          lease_s: float, current: str | None) -> Claim:
    """Take the delivery for one attempt, counted before anything is sent.

    ``current`` is the row as the caller read it; the script takes the lease only if the row
    is still that (compare and set), so the decision is always made on what is stored now.
    ``in_doubt``: an earlier attempt took the delivery and never finished (its process died,
    or its outcome could not be recorded); whether the vendor got it is unknown.
    """
    token = uuid.uuid4().hex
    for _ in range(CLAIM_ROUNDS):
        row = parse_row(current) or LedgerRow.new(connector, urgency)
        if row.claim == token:
            return Claim("claimed", row, token)  # our own write, its reply was lost
        if row.status in NOT_ATTEMPTED:
            return Claim("final", row)
        taken = replace(row, attempts=row.attempts + 1, claim=token, updated_at=time.time())
        reply: Any = _CLAIM_SCRIPT(
            [rows_key(ns, event_id), lease_key(ns, event_id, connector), due_key(ns)],
            [connector, token, int(lease_s * 1000), current or "", taken.to_json(),
             due_member(event_id, connector), taken.updated_at + lease_s + DUE_GRACE_S,
             settings.EVENT_TTL_S], client)
        if reply[0] == "claimed":
            return Claim("in_doubt" if row.claim else "claimed", taken, token)
        if reply[0] == "busy":
            return Claim("busy", busy_for_s=max(0.0, int(reply[1]) / 1000))
        current = reply[1] or None
    return Claim("busy", busy_for_s=1.0)


_FINISH = """
-- KEYS: 1 rows hash, 2 lease, 3 dead zset, 4 due zset, 5 and 6 counters (see FINISH_COUNT_LUA)
-- ARGV: 1 connector, 2 token ('' = none), 3 row json, 4 new status, 5 member (event:connector),
--       6 due member, 7 due score ('' = not due), 8 now, 9 ttl s, 10 sticky statuses,
--       11 latency bucket ('' = none), 12 latency s, 13 error kind ('' = none)
local current = redis.call('HGET', KEYS[1], ARGV[1])
local before = ''
if current then
  before = cjson.decode(current)['status']
  if before ~= ARGV[4] and string.find(' ' .. ARGV[10] .. ' ', ' ' .. before .. ' ', 1, true) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
if ARGV[4] == 'dead' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[8]), ARGV[5])
else
  redis.call('ZREM', KEYS[3], ARGV[5])
end
if ARGV[7] == '' then
  redis.call('ZREM', KEYS[4], ARGV[6])
else
  redis.call('ZADD', KEYS[4], tonumber(ARGV[7]), ARGV[6])
end
""" + counters.FINISH_COUNT_LUA + """
return 1
"""
_FINISH_SCRIPT = _script(_FINISH)
"""The ledger's scripts go by SHA (EVALSHA; loaded again after a flush): a delivery runs two
and a batch one per event, and sending their text each time cost more than running them."""


def finish(client: Any, ns: Namespace, event_id: str, row: LedgerRow, token: str = "") -> bool:
    """Write ``row`` (the outcome), then release the attempt's lease; False when the row was
    already delivered or skipped and stays so. The outcome is counted for the metrics in the
    same script (``counters``). ``client`` may be a pipeline."""
    due = ""
    if row.status in OPEN:
        due = str((row.next_attempt_at or row.updated_at) + DUE_GRACE_S)
    latency = (counters.latency_args(row.created_at, row.delivered_at)
               if row.status == Status.DELIVERED else ("", "0"))
    reply: Any = _FINISH_SCRIPT(
        [rows_key(ns, event_id), lease_key(ns, event_id, row.connector), dead_key(ns),
         due_key(ns), counters.outcomes_key(ns), counters.latency_key(ns)],
        [row.connector, token, row.to_json(), str(row.status), f"{event_id}:{row.connector}",
         due_member(event_id, row.connector), due, row.updated_at, settings.EVENT_TTL_S,
         " ".join(STICKY), *latency, row.error_kind or ""], client)
    return bool(reply)


def reset(client: Any, ns: Namespace, event_id: str, row: LedgerRow) -> None:
    """Start a delivery over (a replay): pending, no attempts, not dead, due soon."""
    row.status, row.attempts, row.next_attempt_at = Status.PENDING, 0, None
    row.first_failure_at, row.claim, row.updated_at = None, None, time.time()
    pipe = client.pipeline(transaction=True)
    pipe.hset(rows_key(ns, event_id), row.connector, row.to_json())
    pipe.zrem(dead_key(ns), f"{event_id}:{row.connector}")
    pipe.zadd(due_key(ns), {due_member(event_id, row.connector): row.updated_at + DUE_GRACE_S})
    pipe.execute()


# Reading ----------------------------------------------------------------------------------------

def parse_row(text: str | None) -> LedgerRow | None:
    return LedgerRow.from_json(text) if text else None


def load(client: Any, ns: Namespace, event_id: str, connector: str) -> LedgerRow | None:
    """One row (sync client)."""
    return parse_row(client.hget(rows_key(ns, event_id), connector))


def rows(stored: dict[str, str]) -> list[LedgerRow]:
    """The rows of one event's hash (as HGETALL returns it)."""
    return [LedgerRow.from_json(text) for name, text in stored.items()
            if not name.endswith(DETAIL_SUFFIX)]


def public_rows(stored: dict[str, str]) -> list[dict[str, Any]]:
    """The rows of one event's hash as ``get_deliveries`` shows them, details merged in."""
    shown = []
    for row in rows(stored):
        public = row.public()
        later = json.loads(stored.get(row.connector + DETAIL_SUFFIX, "{}"))
        public["detail"] = {**public["detail"], **later}
        shown.append(public)
    return sorted(shown, key=lambda r: r["connector"])


def due(client: Any, ns: Namespace, limit: int = 100) -> list[tuple[str, str, str]]:
    """Open deliveries and follow-ups whose time has passed: (event id, connector, kind)."""
    members: Any = client.zrangebyscore(due_key(ns), "-inf", time.time(), start=0, num=limit)
    return [parse_due_member(m) for m in members]


def postpone(client: Any, ns: Namespace, event_id: str, connector: str, delay_s: float,
             kind: str = "") -> None:
    """Look at an open item again after ``delay_s`` (the reconciler republished it)."""
    client.zadd(due_key(ns), {due_member(event_id, connector, kind): time.time() + delay_s})


def forget_due(client: Any, ns: Namespace, event_id: str, connector: str,
               kind: str = "") -> None:
    client.zrem(due_key(ns), due_member(event_id, connector, kind))


def detail(client: Any, ns: Namespace, event_id: str, connector: str) -> dict[str, Any]:
    """What was added to a delivery after it ended (notes, a follow-up's state)."""
    text = client.hget(rows_key(ns, event_id), connector + DETAIL_SUFFIX)
    return json.loads(text) if text else {}


def follow_up_scheduled(client: Any, ns: Namespace, event_id: str, connector: str,
                        state: dict[str, Any], due_at: float) -> None:
    """Record a follow-up step to run at ``due_at`` (its state, for the reconciler)."""
    pipe = client.pipeline(transaction=True)
    add_detail(pipe, ns, event_id, connector, {FOLLOW_UP: {
        "status": "scheduled", "state": state, "due_at": due_at}})
    pipe.zadd(due_key(ns), {due_member(event_id, connector, FOLLOW_UP): due_at + DUE_GRACE_S})
    pipe.execute()


def follow_up_ended(client: Any, ns: Namespace, event_id: str, connector: str, status: str,
                    error: str | None = None) -> None:
    """Record how a follow-up ended (``done`` or ``failed``, with why)."""
    pipe = client.pipeline(transaction=True)
    add_detail(pipe, ns, event_id, connector, {FOLLOW_UP: {
        "status": status, "error": error, "ended_at": time.time()}})
    pipe.zrem(due_key(ns), due_member(event_id, connector, FOLLOW_UP))
    pipe.execute()


_MERGE_DETAIL = """
local detail = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]) or '{}')
for name, value in pairs(cjson.decode(ARGV[2])) do detail[name] = value end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(detail))
"""


def add_detail(client: Any, ns: Namespace, event_id: str, connector: str,
               detail: dict[str, Any]) -> None:
    """Merge ``detail`` into a delivery's row without racing the attempt that owns it."""
    client.eval(_MERGE_DETAIL, 1, rows_key(ns, event_id), connector + DETAIL_SUFFIX,
                json.dumps(detail, allow_nan=False))
