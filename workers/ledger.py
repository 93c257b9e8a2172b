"""The delivery ledger: one record per (event, connector) in a Redis hash per event."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from config_core import settings
from config_core.layout import Namespace

PENDING = "pending"
RETRYING = "retrying"
DELIVERED = "delivered"
DEAD = "dead"
SKIPPED = "skipped"
FINAL = frozenset({DELIVERED, SKIPPED})
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


def load(client: redis.Redis, ns: Namespace, event_id: str, connector: str) -> Record | None:
    text: Any = client.hget(ns.deliveries(event_id), connector)
    return Record.from_json(text) if text else None
