"""The outbox relay: turns outbox events into delivery tasks.

It runs as a thread inside every ``celery -A workers worker`` (see ``RelayStep``). It reads the
outbox streams in consumer group ``dispatch`` (XREADGROUP), publishes one delivery task per
routed connector, then XACKs and deletes the entry. Entries that a dead relay left pending are
claimed with XAUTOCLAIM once idle for ``CLAIM_IDLE_MS``. In eager mode the writer calls
``drain_inline`` instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from redis.exceptions import ResponseError

from config_core import settings
from config_core.layout import DISPATCH_GROUP, NAMESPACES_KEY, Namespace
from config_core.routing import route
from connectors import registry
from workers import batching, ledger, parking, performance
from workers.flush import FLUSH_TASK, RUN_TASK
from workers.redis_client import connect, using
from workers.scheduling import publish
from workers.services import buffer_directly

log = logging.getLogger(__name__)

CLAIM_IDLE_MS = int(os.environ.get("APGCFG_RELAY_CLAIM_IDLE_MS", "30000"))
"""An outbox entry pending this long belongs to a relay presumed dead and is claimed."""

BATCH = 100
"""Entries read per XREADGROUP call."""

BLOCK_MS = 1000
"""How long one XREADGROUP waits for new entries."""

CLAIM_EVERY_S = 5.0
"""How often a relay looks for entries left by a dead relay, and for parked deliveries due."""


class Relay:
    """Reads outbox streams and publishes delivery tasks."""

    def __init__(self, client: redis.Redis, consumer: str) -> None:
        self.client = client
        self.consumer = consumer
        self._groups: set[str] = set()

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set, surviving Redis hiccups."""
        next_sweep = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + CLAIM_EVERY_S
                self.read_once(block_ms=BLOCK_MS)
            except redis.RedisError as exc:
                log.warning("outbox relay: Redis error %s; retrying in 1 s", exc)
                stop.wait(1.0)

    def namespaces(self) -> list[Namespace]:
        names: Any = self.client.smembers(NAMESPACES_KEY)
        found = [Namespace.parse(name) for name in sorted(names)]
        for ns in found:
            self._ensure_group(ns)
        return found

    def read_once(self, block_ms: int | None = None) -> int:
        """Read and dispatch one batch from every outbox; return how many entries."""
        namespaces = self.namespaces()
        if not namespaces:
            time.sleep((block_ms or 0) / 1000)
            return 0
        streams: dict[Any, Any] = {ns.outbox: ">" for ns in namespaces}
        replies: Any = self.client.xreadgroup(DISPATCH_GROUP, self.consumer, streams,
                                              count=BATCH, block=block_ms)
        by_stream = {ns.outbox: ns for ns in namespaces}
        count = 0
        for stream, entries in replies or []:
            self.dispatch(by_stream[stream], entries)
            count += len(entries)
        return count

    def sweep(self) -> None:
        """Claim entries a dead relay left pending, and publish parked deliveries now due."""
        for ns in self.namespaces():
            reply: Any = self.client.xautoclaim(ns.outbox, DISPATCH_GROUP, self.consumer,
                                                min_idle_time=CLAIM_IDLE_MS, start_id="0-0",
                                                count=BATCH)
            entries = [entry for entry in reply[1] if entry and entry[1]]
            if entries:
                log.info("outbox relay: claimed %d entries of %s", len(entries), ns.name)
                self.dispatch(ns, entries)
        for item in parking.take_due(self.client):
            publish(item["task"], item["args"], item["kwargs"])
            parking.done(self.client, item["member"])
        for ns, connector, batch_id in batching.expired(self.client):
            log.info("outbox relay: running batch %s of %s again", batch_id, connector)
            publish(RUN_TASK, [ns.name, connector, batch_id], {})
        for ns, connector in batching.overdue(self.client):
            publish(FLUSH_TASK, [ns.name, connector], {})

    def dispatch(self, ns: Namespace, entries: list[Any]) -> None:
        """Publish the deliveries of ``entries``, then acknowledge and delete them."""
        context = _RoutingContext.load(self.client, ns)
        held: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for entry_id, fields in entries:
            if "e" in fields:
                for name, urgency, event in self._dispatch_event(
                        ns, json.loads(fields["e"]), context, entry_id):
                    held.setdefault(name, []).append((event, urgency))
            elif "r" in fields:
                self._replay(ns, json.loads(fields["r"]))
        for name, waiting in held.items():
            for event, urgency in buffer_directly(ns, name, waiting):
                publish(task_name(name), [ns.name, event["event_id"], name],
                        {"urgency": urgency})
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(ns.outbox, DISPATCH_GROUP, *ids)
        pipe.xdel(ns.outbox, *ids)
        pipe.execute()

    def _dispatch_event(self, ns: Namespace, event: dict[str, Any], context: _RoutingContext,
                        entry_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Store the event and publish its deliveries; return those for always-batched
        connectors, which the caller buffers together."""
        routes = route(event["key"], context.triggers, context.configured)
        urgencies = [u for u in ("high", "medium", "low") if u in routes.values()]
        event["urgency"] = urgencies[0] if urgencies else None
        event_id = event["event_id"]
        if not routes:
            return []
        pipe = self.client.pipeline(transaction=True)
        pipe.set(ns.event(event_id), json.dumps(event), ex=settings.EVENT_TTL_S)
        for name, urgency in routes.items():
            record = ledger.Record.new(name, urgency)
            pipe.hsetnx(ns.deliveries(event_id), name, record.to_json())
        pipe.expire(ns.deliveries(event_id), settings.EVENT_TTL_S)
        pipe.execute()
        batched = []
        for name, urgency in routes.items():
            if registry.always_batched(name):
                batched.append((name, urgency, event))  # no delivery task: it waits for a batch
            else:
                publish(task_name(name), [ns.name, event_id, name], {"urgency": urgency})
        if performance.PROVIDER in context.configured:
            performance.record(self.client, ns, performance.write_samples(event, entry_id))
        return batched

    def _replay(self, ns: Namespace, request: dict[str, Any]) -> None:
        event_id = request["replay"]
        for record in _records(self.client, ns, event_id):
            if request.get("connector") not in (None, record.connector):
                continue
            record.status, record.attempts, record.next_attempt_at = ledger.PENDING, 0, None
            ledger.save(self.client, ns, event_id, record)
            publish(task_name(record.connector), [ns.name, event_id, record.connector],
                    {"urgency": record.urgency})

    def _ensure_group(self, ns: Namespace) -> None:
        if ns.outbox in self._groups:
            return
        try:
            self.client.xgroup_create(ns.outbox, DISPATCH_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(ns.outbox)


class _RoutingContext:
    """The routing inputs of one namespace, read once per batch."""

    def __init__(self, triggers: dict[str, Any], configured: set[str]) -> None:
        self.triggers = triggers
        self.configured = configured

    @classmethod
    def load(cls, client: redis.Redis, ns: Namespace) -> _RoutingContext:
        pipe = client.pipeline(transaction=False)
        pipe.hget(ns.value("integrations.notifications"), "value")
        pipe.zrangebylex(ns.index, "[integrations.", "[integrations.\xff")
        pipe.hkeys(ns.connectors)
        notifications, keys, custom = pipe.execute()
        triggers = (json.loads(notifications) or {}).get("triggers", {}) if notifications else {}
        names = {key.split(".", 1)[1] for key in keys if key.count(".") == 1}
        known = set(registry.BUILTIN) | set(custom)
        return cls(triggers, {n for n in names & known if registry.receives_events(n)})


def _records(client: redis.Redis, ns: Namespace, event_id: str) -> list[ledger.Record]:
    stored: Any = client.hgetall(ns.deliveries(event_id))
    return [ledger.Record.from_json(text) for name, text in stored.items()
            if not name.endswith(ledger.DETAIL_SUFFIX)]


def task_name(connector: str) -> str:
    """The delivery task of a connector: one per built-in type, one shared by custom ones."""
    return f"workers.deliver.{connector if connector in registry.BUILTIN else 'custom'}"


def consumer_name() -> str:
    """A consumer name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def drain_inline(redis_url: str, ns: Namespace) -> None:
    """Eager mode: relay (and so deliver) every waiting entry of ``ns`` in this thread."""
    relay = Relay(connect(redis_url), f"inline:{consumer_name()}")
    relay._ensure_group(ns)
    try:
        with using(relay.client):
            _drain(relay, ns)
    finally:
        relay.client.close()


def _drain(relay: Relay, ns: Namespace) -> None:
    while True:
        replies: Any = relay.client.xreadgroup(DISPATCH_GROUP, relay.consumer,
                                               {ns.outbox: ">"}, count=BATCH)
        if not replies:
            return
        for _, entries in replies:
            relay.dispatch(ns, entries)
