"""Each connector's health record, its pause, and the line its deliveries wait in.

One hash per connector (``health:{connector}``) holds what the deliveries taught and what the
checks found:

- ``failures``: failed delivery attempts in a row (any failure; a delivery resets it). The
  circuit breaker (``breakers``) shares this streak and keeps only its own opening times.
- ``last_error`` (secrets already scrubbed), ``last_failure_at``, ``last_success_at``;
- ``paused`` (``1``), ``paused_at``, ``paused_reason``: a paused connector's deliveries are not
  attempted; they wait in its line;
- ``status`` and ``last_check``: what the last health check said (a change emits an event).

The line (``waiting:{connector}``) is a sorted set of event ids scored by the event's time, so
waiting deliveries go out in the order their changes were made. A delivery joins it while the
connector is paused, or while earlier deliveries still wait (so nothing overtakes them); its
ledger row is then ``waiting`` (no attempt counted). Every step that moves a delivery in or out
of the line is one script that also writes its ledger row, so a row is ``waiting`` exactly
when its event is in the line.
"""

from __future__ import annotations

import time
from typing import Any

from config_core.state.keys import Namespace

DEFAULT_PAUSE_AFTER = 10
"""Failed attempts in a row that pause a connector (``integrations.health.pause_after``)."""

DEFAULT_UNHEALTHY_AFTER = 3
"""Failed attempts in a row that make a connector unhealthy
(``integrations.health.unhealthy_after``)."""

DRAIN_LEASE_S = 60
"""How long one drain of a line holds it; a drain that died is replaced after this."""


def record_key(ns: Namespace, connector: str) -> str:
    """Hash: the connector's health record (the breaker's fields too)."""
    return ns.key("health", connector)


def line_key(ns: Namespace, connector: str) -> str:
    """Sorted set: event ids waiting for ``connector`` (score: the event's time)."""
    return ns.key("waiting", connector)


def drain_key(ns: Namespace, connector: str) -> str:
    """Held by the task sending a line's deliveries out (one at a time, in order)."""
    return ns.key("draining", connector)


def read(client: Any, ns: Namespace, connector: str) -> dict[str, str]:
    """The stored record (empty when the connector never failed nor was checked)."""
    return dict(client.hgetall(record_key(ns, connector)) or {})


def is_paused(record: dict[str, str]) -> bool:
    return record.get("paused") == "1"


def failures(record: dict[str, str]) -> int:
    return int(record.get("failures") or 0)


# Outcomes ---------------------------------------------------------------------------------------

_SUCCEEDED = """
redis.call('HSET', KEYS[1], 'failures', 0, 'last_success_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'open_until', 'cooldown_s', 'breaker_base')
"""


def succeeded(client: Any, ns: Namespace, connector: str) -> None:
    """A delivery went through: the streak ends (``client`` may be a pipeline)."""
    client.eval(_SUCCEEDED, 1, record_key(ns, connector), time.time())


_FAILED = """
-- KEYS: 1 record; ARGV: 1 now, 2 error, 3 pause after (0: never), 4 reason
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2], 'last_failure_at', ARGV[1])
local threshold = tonumber(ARGV[3])
if threshold > 0 and failures >= threshold and redis.call('HGET', KEYS[1], 'paused') ~= '1' then
  redis.call('HSET', KEYS[1], 'paused', '1', 'paused_at', ARGV[1], 'paused_reason', ARGV[4])
  return {failures, 1}
end
return {failures, 0}
"""


def failed(client: Any, ns: Namespace, connector: str, error: str, pause_after: int) -> Any:
    """Count a failed attempt; pauses the connector at ``pause_after`` in a row. Returns
    ``[failures, 1 if this paused it]`` (from a pipeline: queued)."""
    reason = f"paused after {pause_after} failed deliveries in a row"
    return client.eval(_FAILED, 1, record_key(ns, connector), time.time(), error[:300],
                       pause_after, reason)


# Pause and resume -------------------------------------------------------------------------------

def pause(client: Any, ns: Namespace, connector: str, reason: str) -> bool:
    """Pause by hand; False when it already was."""
    key = record_key(ns, connector)
    if client.hget(key, "paused") == "1":
        return False
    client.hset(key, mapping={"paused": "1", "paused_at": time.time(), "paused_reason": reason})
    return True


def resume(client: Any, ns: Namespace, connector: str) -> bool:
    """Lift the pause (the streak stays: the next failure pauses again at once); False when
    it was not paused."""
    return bool(client.hdel(record_key(ns, connector), "paused", "paused_at", "paused_reason"))


TRANSITION_SCRIPT = """
local previous = redis.call('HGET', KEYS[1], 'status') or ''
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'last_check', ARGV[2])
return previous
"""


def transition(client: Any, ns: Namespace, connector: str, status: str, at: str) -> str:
    """Record a check's status; returns the one before ("" when never checked)."""
    return str(client.eval(TRANSITION_SCRIPT, 1, record_key(ns, connector), status, at) or "")


# The line ---------------------------------------------------------------------------------------

_JOIN = """
-- KEYS: 1 record, 2 line, 3 ledger rows, 4 due; ARGV: 1 connector, 2 event id, 3 score,
--       4 row as read ('' = none), 5 waiting row, 6 due member, 7 ttl, 8 from line (1/0)
if ARGV[8] == '1' or (redis.call('HGET', KEYS[1], 'paused') ~= '1'
                      and redis.call('ZCARD', KEYS[2]) == 0) then
  return {'go', ''}
end
local current = redis.call('HGET', KEYS[3], ARGV[1]) or ''
if current ~= ARGV[4] then return {'changed', current} end
redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[3]), ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
redis.call('ZREM', KEYS[4], ARGV[6])
return {'waiting', ''}
"""


def join_script() -> str:
    """The script a delivery runs before it is attempted (see ``workers.delivery``)."""
    return _JOIN


_HANDOFF = """
-- KEYS: 1 ledger rows, 2 due; ARGV: 1 connector, 2 row as read, 3 pending row, 4 due member,
--       5 due score
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[4])
return 1
"""


def handoff_script() -> str:
    """The script that moves a waiting row back to pending (compare and set)."""
    return _HANDOFF


def head(client: Any, ns: Namespace, connector: str) -> str | None:
    """The event id first in line."""
    first = client.zrange(line_key(ns, connector), 0, 0)
    return first[0] if first else None


def leave(client: Any, ns: Namespace, connector: str, event_id: str) -> None:
    client.zrem(line_key(ns, connector), event_id)


def waiting(client: Any, ns: Namespace, connector: str) -> int:
    return int(client.zcard(line_key(ns, connector)))


def take_drain(client: Any, ns: Namespace, connector: str, token: str) -> bool:
    return bool(client.set(drain_key(ns, connector), token, nx=True, ex=DRAIN_LEASE_S))


def release_drain(client: Any, ns: Namespace, connector: str, token: str) -> None:
    if client.get(drain_key(ns, connector)) == token:
        client.delete(drain_key(ns, connector))
