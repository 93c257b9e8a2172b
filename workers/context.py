"""The Redis-backed delivery context a worker hands each connector (see connectors.context)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from config_core.events import Change, Event
from config_core.state import dedupe, ledger, values
from config_core.state.keys import Namespace
from config_core.state.values import event_only, write_sync
from connectors.context import DeliveryContext

Schedule = Callable[[Namespace, str, str, dict[str, Any], float], None]
"""Publishes a follow-up: (namespace, event id, connector, state, delay_s)."""


class RedisContext(DeliveryContext):
    """Context of one delivery (event, connector) in a namespace."""

    def __init__(self, client: redis.Redis, ns: Namespace, event: Event, connector: str,
                 schedule: Schedule) -> None:
        self.client = client
        self.ns = ns
        self.event = event
        self.event_id = event.get("event_id", "")
        self.connector = connector
        self._schedule = schedule

    def _field(self, step: str) -> str:
        return f"{self.connector}:{step}"

    def created(self, step: str) -> dict[str, Any] | None:
        return dedupe.created(self.client, self.ns, self.event_id, self._field(step))

    def mark(self, step: str, state: str, ref: dict[str, Any] | None = None) -> None:
        dedupe.mark(self.client, self.ns, self.event_id, self._field(step), state, ref)

    def forget(self, step: str) -> None:
        dedupe.forget(self.client, self.ns, self.event_id, self._field(step))

    def follow_up(self, state: dict[str, Any], delay_s: float) -> None:
        self._schedule(self.ns, self.event_id, self.connector, state, delay_s)

    def add_note(self, note: dict[str, Any]) -> None:
        noted = {"connector": self.connector, "event_id": self.event_id, **note}
        values.add_note(self.client, self.ns, self.event["key"], self.event["version"], noted)
        ledger.add_detail(self.client, self.ns, self.event_id, self.connector, note)

    def emit(self, event_type: str, metadata: dict[str, Any]) -> str:
        event = self.event
        change = Change(event_type, self.ns.tenant, self.ns.environment, event["key"],
                        event.get("new_value"), f"connector:{self.connector}", None,
                        {"source_event_id": self.event_id, **metadata})
        write_sync(self.client, self.ns, event_only(change, json.dumps(event.get("new_value"))))
        return change.event_id

    def claim_newest(self, key: str, version: int) -> int | None:
        return dedupe.claim_newest(self.client, self.ns, f"{self.connector}:{key}", version)
