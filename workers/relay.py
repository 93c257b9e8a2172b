"""The outbox relay: turns outbox events into delivery tasks, and keeps deliveries moving.

It runs as a thread inside every ``celery -A workers worker`` (see ``workers.bootsteps``),
which restarts it should it ever stop. It reads the outbox streams in consumer group
``dispatch`` (XREADGROUP), high before medium before low (``workers.outbox_reader``; a relay
may read only some urgencies), records each routed delivery as pending, publishes one delivery
task per connector, then XACKs and deletes the entry.

Nothing stops it for long:
- an entry it cannot dispatch (bad data, a connector setting that breaks routing) is recorded
  as a dead delivery to ``relay`` with the reason, and the others go on;
- Redis or broker outages are waited out; entries read but not dispatched stay pending in the
  group and are read again;
- an outbox stream or group that vanished (Redis restarted without its data) is recreated.

Every ``SWEEP_EVERY_S`` it also claims entries a dead relay left pending (XAUTOCLAIM),
publishes parked tasks that are due, reruns batches whose worker died, reconciles deliveries
whose task was lost (ledger rows still open past their time), expires change requests whose
approvers did not decide in time, publishes the multi-environment syncs that are due
(``workers.env_sync``, once per ``sync_interval``), restarts the drain of a resumed connector's
waiting line whose drain died, and reports its liveness.
In eager mode the writer calls ``drain_inline`` instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from kombu.exceptions import OperationalError

from config_core.events import Event
from config_core.routing import DEFAULT_URGENCY, URGENCIES, route_event
from config_core.state import approvals, buffers, events, ledger, parking, relays, values
from config_core.state.keys import Namespace
from config_core.state.ledger import LedgerRow, Status
from connectors import registry
from workers import batches, env_sync, lines, performance, scheduling
from workers.outbox_reader import READ_BATCH, OutboxReader
from workers.redis_client import connect, using

log = logging.getLogger(__name__)

CLAIM_IDLE_MS = int(os.environ.get("APGCFG_RELAY_CLAIM_IDLE_MS", "30000"))
"""An outbox entry pending this long belongs to a relay presumed dead and is claimed."""

BATCH = READ_BATCH["high"]
"""Most entries read (or claimed) per stream and call; see ``outbox_reader.READ_BATCH``."""

BLOCK_MS = 1000
"""How long one XREADGROUP waits for new entries."""

SWEEP_EVERY_S = 5.0
"""How often a relay claims abandoned entries, releases parked tasks and reconciles."""

RELAY_ROW = "relay"
"""Ledger row name of an event the relay could not dispatch (dead, with the reason)."""

TRANSIENT = (redis.ConnectionError, redis.TimeoutError, OperationalError, OSError)
"""Failures that pass: the entry stays pending and is dispatched again."""

MAX_PAUSE_S = 5.0
"""Longest pause between two tries after consecutive failures."""


class Relay:
    """Reads outbox streams and publishes delivery tasks."""

    def __init__(self, client: redis.Redis, consumer: str,
                 urgencies: Sequence[str] = URGENCIES) -> None:
        self.client = client
        self.consumer = consumer
        self.reader = OutboxReader(client, consumer, urgencies)
        self.urgencies = self.reader.urgencies
        self.health = relays.Health(consumer, urgencies=list(self.urgencies))
        self._groups: set[Namespace] = set()
        self._reread_own = False

    # the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set; no exception ends it."""
        next_sweep = 0.0
        failures = 0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                self.read_once(block_ms=BLOCK_MS)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any failure
                failures += 1
                self._failed(exc)
                stop.wait(min(MAX_PAUSE_S, 0.2 * 2 ** min(failures, 5)))

    def _failed(self, exc: Exception) -> None:
        self.health.error(exc)
        if events.is_missing_group(exc):
            log.warning("outbox relay: an outbox or its group is gone; recreating")
            self._groups.clear()
        elif isinstance(exc, TRANSIENT):
            log.warning("outbox relay: %s: %s; retrying", type(exc).__name__, exc)
        else:
            log.exception("outbox relay: unexpected error; carrying on")
        self._reread_own = True

    def namespaces(self) -> list[Namespace]:
        found = events.namespaces(self.client)
        for ns in found:
            if ns not in self._groups:
                events.ensure_group(self.client, ns)
                self._groups.add(ns)
        return found

    def read_once(self, block_ms: int | None = None) -> int:
        """Read and dispatch the next batches, most urgent first; return how many entries."""
        namespaces = self.namespaces()
        if not namespaces:
            time.sleep((block_ms or 0) / 1000)
            return 0
        own = self._reread_own  # after a failure: our own pending entries first
        found = self.reader.read(namespaces, block_ms=block_ms, own_pending=own)
        if own and not found:
            self._reread_own = False  # our own pending entries are all dispatched again
        for batch in found:
            self.dispatch(batch.ns, batch.entries, batch.urgency)
        return sum(len(batch.entries) for batch in found)

    # the sweep -----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Claim abandoned entries, publish due parked tasks, rerun dead batches, reconcile,
        expire change requests."""
        backlog = {}
        for ns in self.namespaces():
            self._isolated(ns, "claim", self._claim_abandoned, ns)
            self._isolated(ns, "reconcile", self.reconcile, ns)
            self._isolated(ns, "expire approvals", self.expire_approvals, ns)
            self._isolated(ns, "multi-environment sync", self.schedule_env_sync, ns)
            self._isolated(ns, "waiting lines", lines.restart_stalled, self.client, ns)
            backlog[ns.name] = self._isolated(ns, "backlog", relays.backlog, self.client, ns)
        self._release_parked()
        for ns, connector, batch_id in buffers.expired(self.client):
            log.info("outbox relay: running batch %s of %s again", batch_id, connector)
            scheduling.publish(batches.RUN_TASK, [ns.name, connector, batch_id], {})
        for ns, connector in buffers.overdue(self.client):
            scheduling.publish(batches.FLUSH_TASK, [ns.name, connector], {})
        self.health.beat(backlog)
        relays.report(self.client, self.health)

    def _isolated(self, ns: Namespace, what: str, work: Any, *args: Any) -> Any:
        """Run one namespace's part of the sweep; a failure is logged, never blocks others."""
        try:
            return work(*args)
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - one namespace must not stop the others
            if events.is_missing_group(exc):
                self._groups.discard(ns)
            log.warning("outbox relay: %s of %s failed: %s", what, ns.name, exc)
            self.health.error(exc)
            return None

    def _claim_abandoned(self, ns: Namespace) -> None:
        for urgency in self.urgencies:
            reply: Any = self.client.xautoclaim(events.outbox_key(ns, urgency),
                                                events.DISPATCH_GROUP, self.consumer,
                                                min_idle_time=CLAIM_IDLE_MS, start_id="0-0",
                                                count=BATCH)
            entries = [entry for entry in reply[1] if entry and entry[1]]
            if entries:
                log.info("outbox relay: claimed %d entries of %s (%s)", len(entries), ns.name,
                         urgency)
                self.dispatch(ns, entries, urgency)

    def _release_parked(self) -> None:
        for item in parking.take_due(self.client):
            scheduling.publish(item["task"], item["args"], item["kwargs"])
            parking.done(self.client, item["member"])

    def reconcile(self, ns: Namespace) -> int:
        """Publish again the open deliveries and follow-ups whose task was lost."""
        republished = 0
        for event_id, connector, kind in ledger.due(self.client, ns):
            task = self._lost_task(ns, event_id, connector, kind)
            if task is None:
                ledger.forget_due(self.client, ns, event_id, connector, kind)
                continue
            ledger.postpone(self.client, ns, event_id, connector, ledger.DUE_GRACE_S, kind)
            scheduling.publish(*task)
            republished += 1
        if republished:
            log.warning("outbox relay: %d deliveries of %s were overdue; published again",
                        republished, ns.name)
            self.health.reconciled += republished
        return republished

    def expire_approvals(self, ns: Namespace) -> int:
        """Expire the change requests whose time is up (``approval.decided``, expired)."""
        expired = approvals.expire_due(self.client, ns)
        if expired:
            log.info("outbox relay: %d change requests of %s expired", expired, ns.name)
        return expired

    def schedule_env_sync(self, ns: Namespace) -> int:
        """Publish a sync task for each target of ``ns`` whose ``sync_interval`` has passed."""
        due = env_sync.due_targets(self.client, ns)
        for target in due:
            scheduling.publish(env_sync.TASK, [ns.name, target], {})
        return len(due)

    def _lost_task(self, ns: Namespace, event_id: str, connector: str, kind: str
                   ) -> tuple[str, list[Any], dict[str, Any]] | None:
        """The task to publish again for an overdue item; None when it is over."""
        if kind == ledger.FOLLOW_UP:
            follow = ledger.detail(self.client, ns, event_id, connector).get(ledger.FOLLOW_UP)
            if not follow or follow.get("status") != "scheduled":
                return None
            return (scheduling.follow_up_task(connector),
                    [ns.name, event_id, connector, follow["state"]], {})
        row = ledger.load(self.client, ns, event_id, connector)
        if row is None or row.status not in ledger.OPEN:
            return None
        return (scheduling.delivery_task(connector), [ns.name, event_id, connector],
                {"urgency": row.urgency})

    # dispatching ---------------------------------------------------------------------------

    def dispatch(self, ns: Namespace, entries: list[Any], urgency: str = DEFAULT_URGENCY,
                 ) -> None:
        """Publish the deliveries of ``entries`` (read from ``ns``'s outbox stream of
        ``urgency``), then acknowledge and delete them.

        The whole batch's writes (events, ledger rows, samples) go in one MULTI, before any of
        its tasks is published: one round trip per batch, not per event.
        """
        if not entries:
            return
        context = _RoutingContext.load(self.client, ns)
        pipe = self.client.pipeline(transaction=True)
        routed: list[tuple[str, str, Event]] = []
        for entry_id, fields in entries:
            if not fields:
                continue  # deleted after it was read: nothing left to dispatch
            routed += self._entry(ns, entry_id, fields, context, pipe)
        pipe.execute()
        held: dict[str, list[tuple[Event, str]]] = {}
        publish: list[tuple[str, str, Event]] = []
        for name, queue, event in routed:  # queue: the delivery's urgency, not the stream's
            if context.buffers(name):
                held.setdefault(name, []).append((event, queue))  # waits for a batch
            else:
                publish.append((name, queue, event))
        for name, waiting in held.items():
            publish += [(name, queue, event) for event, queue in self._buffer(ns, name, waiting)]
        for name, queue, event in publish:
            scheduling.publish(scheduling.delivery_task(name),
                               [ns.name, event["event_id"], name], {"urgency": queue})
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.client.pipeline(transaction=True)
        stream = events.outbox_key(ns, urgency)
        pipe.xack(stream, events.DISPATCH_GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()
        self.health.dispatched += len(ids)

    def _entry(self, ns: Namespace, entry_id: str, fields: dict[str, str],
               context: _RoutingContext, pipe: Any) -> list[tuple[str, str, Event]]:
        """Dispatch one entry; one that cannot be dispatched is recorded, not raised."""
        try:
            if events.EVENT_FIELD in fields:
                return self._dispatch_event(ns, json.loads(fields[events.EVENT_FIELD]),
                                            context, entry_id, pipe)
            if events.REPLAY_FIELD in fields:
                self._replay(ns, json.loads(fields[events.REPLAY_FIELD]), context)
            if events.DRAIN_FIELD in fields:
                lines.schedule(ns, fields[events.DRAIN_FIELD])
            return []
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - a poison entry must not block the others
            self._poisoned(ns, entry_id, fields, exc)
            return []

    def _dispatch_event(self, ns: Namespace, event: Event, context: _RoutingContext,
                        entry_id: str, pipe: Any) -> list[tuple[str, str, Event]]:
        """Queue the event's writes on ``pipe`` (stored, its ledger rows opened); return its
        deliveries as (connector, urgency, event), which the caller buffers or publishes."""
        routes = route_event(event, context.triggers, context.configured)
        urgencies = [u for u in URGENCIES if u in routes.values()]
        event["urgency"] = urgencies[0] if urgencies else None
        if not routes:
            return []
        events.store(pipe, ns, event)
        ledger.open_rows(pipe, ns, event["event_id"], routes)
        if performance.PROVIDER in context.configured:
            performance.record(pipe, ns, performance.write_samples(event, entry_id))
        return [(name, urgency, event) for name, urgency in routes.items()]

    def _buffer(self, ns: Namespace, name: str, waiting: list[tuple[Event, str]]
                ) -> list[tuple[Event, str]]:
        """Buffer always-batched events; those it cannot get delivery tasks, which record
        what is wrong."""
        try:
            return batches.buffer_directly(ns, name, waiting)
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - the tasks report it per event
            log.warning("outbox relay: could not buffer %d events for %s: %s", len(waiting),
                        name, exc)
            return waiting

    def _poisoned(self, ns: Namespace, entry_id: str, fields: dict[str, str],
                  exc: Exception) -> None:
        """Record an entry that cannot be dispatched as a dead delivery, with the reason."""
        reason = f"the relay could not dispatch this event: {type(exc).__name__}: {exc}"[:500]
        log.error("outbox relay: entry %s of %s: %s", entry_id, ns.name, reason)
        self.health.poisoned += 1
        try:
            event = json.loads(fields.get(events.EVENT_FIELD) or "{}")
            event_id = str(event.get("event_id") or f"entry-{entry_id}")
        except ValueError:
            event_id = f"entry-{entry_id}"
        row = LedgerRow.new(RELAY_ROW, "high").mark(Status.DEAD, reason, kind="undispatchable")
        ledger.finish(self.client, ns, event_id, row)

    def _replay(self, ns: Namespace, request: dict[str, Any], context: _RoutingContext) -> None:
        event_id = request["replay"]
        stored: Any = self.client.hgetall(ledger.rows_key(ns, event_id))
        for row in ledger.rows(stored):
            if request.get("connector") not in (None, row.connector):
                continue
            ledger.reset(self.client, ns, event_id, row)
            scheduling.publish(scheduling.delivery_task(row.connector),
                               [ns.name, event_id, row.connector], {"urgency": row.urgency})


class _RoutingContext:
    """The routing inputs of one namespace, read once per batch."""

    def __init__(self, triggers: dict[str, Any], configured: set[str],
                 batching: bool = False) -> None:
        self.triggers = triggers
        self.configured = configured
        self.batching = batching
        """``integrations.batching`` is set: connectors with a batch policy may hold events."""

    def buffers(self, name: str) -> bool:
        """Whether the relay offers ``name``'s events to its buffer instead of a task each."""
        return registry.always_batched(name) or (self.batching and registry.may_batch(name))

    @classmethod
    def load(cls, client: redis.Redis, ns: Namespace) -> _RoutingContext:
        pipe = client.pipeline(transaction=False)
        pipe.hget(values.value_key(ns, "integrations.notifications"), "value")
        pipe.zrangebylex(values.index_key(ns), "[integrations.", "[integrations.\xff")
        pipe.hkeys(values.registry_key(ns))
        notifications, keys, custom = pipe.execute()
        triggers = (values.decode(notifications) or {}).get("triggers", {})
        names = {key.split(".", 1)[1] for key in keys if key.count(".") == 1}
        known = set(registry.BUILTIN) | set(custom)
        return cls(triggers, {n for n in names & known if registry.receives_events(n)},
                   BATCHING in names)


BATCHING = "batching"
"""``integrations.batching``: digests and batches for connectors that support them."""


def consumer_name() -> str:
    """A consumer name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def drain_inline(redis_url: str, ns: Namespace) -> None:
    """Eager mode: relay (and so deliver) every waiting entry of ``ns`` in this thread."""
    relay = Relay(connect(redis_url), f"inline:{consumer_name()}")
    events.ensure_group(relay.client, ns)
    try:
        with using(relay.client):
            _drain(relay, ns)
    finally:
        relay.client.close()


def _drain(relay: Relay, ns: Namespace) -> None:
    while found := relay.reader.read([ns]):
        for batch in found:
            relay.dispatch(batch.ns, batch.entries, batch.urgency)
