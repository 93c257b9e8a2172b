"""The Redis-backed delivery context a worker hands each connector (see connectors.context)."""

from __future__ import annotations

import json
from typing import Any

import redis

from config_core import settings
from config_core.events import Change
from config_core.layout import Namespace
from config_core.store import event_only, write_sync
from connectors.context import DeliveryContext
from workers import ledger

_APPEND_NOTE = """
local notes = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]) or '[]')
table.insert(notes, cjson.decode(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(notes))
"""

_CLAIM_NEWEST = """
local newest = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if newest > tonumber(ARGV[2]) then return newest end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return false
"""


class RedisContext(DeliveryContext):
    """Context of one delivery (event, connector) in a namespace."""

    def __init__(self, client: redis.Redis, ns: Namespace, event: dict[str, Any],
                 connector: str, schedule: Any) -> None:
        self.client = client
        self.ns = ns
        self.event = event
        self.event_id = event["event_id"]
        self.connector = connector
        self._schedule = schedule

    def _field(self, step: str) -> str:
        return f"{self.connector}:{step}"

    def created(self, step: str) -> dict[str, Any] | None:
        text: Any = self.client.hget(self.ns.dedupe(self.event_id), self._field(step))
        return json.loads(text) if text else None

    def mark(self, step: str, state: str, ref: dict[str, Any] | None = None) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.ns.dedupe(self.event_id), self._field(step),
                  json.dumps({"state": state, "ref": ref}))
        pipe.expire(self.ns.dedupe(self.event_id), settings.EVENT_TTL_S)
        pipe.execute()

    def forget(self, step: str) -> None:
        self.client.hdel(self.ns.dedupe(self.event_id), self._field(step))

    def follow_up(self, state: dict[str, Any], delay_s: float) -> None:
        self._schedule(self.ns, self.event_id, self.connector, state, delay_s)

    def add_note(self, note: dict[str, Any]) -> None:
        noted = {"connector": self.connector, "event_id": self.event_id, **note}
        self.client.eval(_APPEND_NOTE, 1, self.ns.notes(self.event["key"]),
                         str(self.event["version"]), json.dumps(noted))
        ledger.add_detail(self.client, self.ns, self.event_id, self.connector, note)

    def emit(self, event_type: str, metadata: dict[str, Any]) -> str:
        event = self.event
        change = Change(event_type, self.ns.tenant, self.ns.environment, event["key"],
                        event.get("new_value"), f"connector:{self.connector}", None,
                        {"source_event_id": self.event_id, **metadata})
        write_sync(self.client, self.ns, event_only(change, json.dumps(event.get("new_value"))))
        return change.event_id

    def claim_newest(self, key: str, version: int) -> int | None:
        newer: Any = self.client.eval(_CLAIM_NEWEST, 1, self.ns.triggered,
                                      f"{self.connector}:{key}", version)
        return int(newer) if newer else None
