"""Long waits: deliveries due later than a Celery countdown may be are parked in Redis.

A countdown past the Redis visibility timeout would be redelivered while it waits, so a wait
longer than ``MAX_COUNTDOWN_S`` is kept in a sorted set and published again when due.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from config_core.state.keys import ROOT

PARKED_KEY = f"{ROOT}:parked"
"""Sorted set of tasks waiting longer than a Celery countdown may (score: due epoch)."""

CLAIM_LEASE_S = 60
"""A relay that takes due entries owns them this long; if it dies they become due again."""

_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
"""


def park(client: redis.Redis, task_name: str, args: list[Any], kwargs: dict[str, Any],
         wait_s: float) -> None:
    """Keep a task to publish ``wait_s`` seconds from now.

    Each parking is its own member (a unique id), so a delivery parked again while an earlier
    parking of it is being published is never erased by that one's ``done``.
    """
    member = json.dumps({"task": task_name, "args": args, "kwargs": kwargs,
                         "id": uuid.uuid4().hex}, sort_keys=True, allow_nan=False)
    client.zadd(PARKED_KEY, {member: time.time() + wait_s})


def take_due(client: redis.Redis, limit: int = 100) -> list[dict[str, Any]]:
    """Claim the parked tasks that are due (leased, so one relay publishes each)."""
    members = client.eval(_TAKE_DUE, 1, PARKED_KEY, time.time(), CLAIM_LEASE_S, limit)
    return [{**json.loads(member), "member": member} for member in members]


def done(client: redis.Redis, member: str) -> None:
    """Forget a parked task once it has been published."""
    client.zrem(PARKED_KEY, member)
