"""The delivery ledger: one record per (event, connector) in a Redis hash per event."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from config_core import settings
from config_core.layout import DETAIL_SUFFIX, Namespace

PENDING = "pending"
RETRYING = "retrying"
DELIVERED = "delivered"
DEAD = "dead"
SKIPPED = "skipped"
BATCHED = "batched"
"""Waiting in a connector's buffer for its batch to be flushed."""
FINAL = frozenset({DELIVERED, SKIPPED, BATCHED})
"""Statuses after which a redelivered task does nothing."""


@dataclass
class Record:
    """What the ledger keeps for one delivery."""

    connector: str
    urgency: str
    status: str = PENDING
    attempts: int = 0
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    delivered_at: float | None = None
    next_attempt_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, connector: str, urgency: str) -> Record:
        moment = time.time()
        return cls(connector, urgency, created_at=moment, updated_at=moment)

    @classmethod
    def from_json(cls, text: str) -> Record:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def mark(self, status: str, error: str | None = None, retry_in_s: float | None = None
             ) -> Record:
        """Move to ``status``, stamping the time (and the error or the next attempt)."""
        self.status = status
        self.updated_at = time.time()
        if error is not None or status == DELIVERED:
            self.last_error = error
        if status == DELIVERED:
            self.delivered_at = self.updated_at
        self.next_attempt_at = self.updated_at + retry_in_s if retry_in_s is not None else None
        return self


def save(client: redis.Redis, ns: Namespace, event_id: str, record: Record) -> None:
    """Write one record; a dead one is also listed in the namespace's dead set."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(ns.deliveries(event_id), record.connector, record.to_json())
    pipe.expire(ns.deliveries(event_id), settings.EVENT_TTL_S)
    member = f"{event_id}:{record.connector}"
    if record.status == DEAD:
        pipe.zadd(ns.dead, {member: record.updated_at})
    else:
        pipe.zrem(ns.dead, member)
    pipe.execute()



_MERGE_DETAIL = """
local detail = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]) or '{}')
for name, value in pairs(cjson.decode(ARGV[2])) do detail[name] = value end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(detail))
"""


def add_detail(client: redis.Redis, ns: Namespace, event_id: str, connector: str,
               detail: dict[str, Any]) -> None:
    """Merge ``detail`` into a delivery's record without racing the task that owns it."""
    client.eval(_MERGE_DETAIL, 1, ns.deliveries(event_id), connector + DETAIL_SUFFIX,
                json.dumps(detail))


def load(client: redis.Redis, ns: Namespace, event_id: str, connector: str) -> Record | None:
    text: Any = client.hget(ns.deliveries(event_id), connector)
    return Record.from_json(text) if text else None
