"""Batched deliveries: buffer events, flush a due batch as a chord, record each one's outcome.

Events bound for a batched connector (Splunk HEC always; chat connectors when
``integrations.batching`` is set) wait in a Redis buffer (``config_core.state.buffers``). A
flush claims up to ``batch_size`` of them into a batch with a lease and runs a chord: the header
prepares chunks of events, the body posts them with one ``send_batch``. Prepared items travel
with their event ids, so a chord that runs late never pairs an item with another event. A worker
that dies between the claim and the post leaves the batch behind; when its lease runs out the
relay's sweep runs it again, and a batch is never posted by two runs at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import chord

from config_core.errors import ApgConfigError, ConfigError
from config_core.events import Event
from config_core.state import buffers, events, ledger
from config_core.state.keys import Namespace
from config_core.state.ledger import LedgerRow, Status
from connectors.base import BaseConnector, call
from connectors.errors import PartialFailure, PermanentError, RetryableError, kind_of
from workers import loading, scheduling
from workers.celery_app import app
from workers.redis_client import client
from workers.retrying import RetryPolicy, backoff_s

log = logging.getLogger(__name__)

FLUSH_TASK = "workers.flush"
PREPARE_TASK = "workers.batch_prepare"
POST_TASK = "workers.batch_post"
RUN_TASK = "workers.batch_run"

PREPARE_CHUNK = 50
"""Events one header task prepares: a task per event would cost more than the preparing."""

Policy = tuple[int, float]
"""(batch_size, flush_interval_s) of a buffer."""

Prepared = list[list[Any]]
"""What a header task returns: ``[event_id, item]`` pairs (item None: the event expired)."""


# Buffering --------------------------------------------------------------------------------------

def schedule_flush(ns: Namespace, connector: str, delay_s: float = 0.0) -> None:
    """Look at ``connector``'s buffer after ``delay_s`` (at once: it is full)."""
    scheduling.publish(FLUSH_TASK, [ns.name, connector], {}, delay_s, timer=delay_s > 0)


def buffer(ns: Namespace, connector: str, pairs: list[tuple[str, str]], policy: Policy
           ) -> list[str]:
    """Buffer events (id, urgency) that are still pending; return the ids buffered.

    An event already buffered, delivered or dead (a relay that dispatched it twice, a task
    run twice) is left alone, so it is never posted twice.
    """
    moved = ledger.open_batched(client(), ns, connector, pairs)
    if not moved:
        return moved
    waiting, since = buffers.append(client(), ns, connector, moved, policy)
    size, interval_s = policy
    before = waiting - len(moved)
    if waiting // size > before // size:
        # these filled a batch: flush it now. Only then: a flush that finds a full batch left
        # asks for the next itself, and a flush per relay read would outnumber the batches
        schedule_flush(ns, connector)
    elif before == 0:  # these opened the window
        schedule_flush(ns, connector, max(0.0, since + interval_s - time.time()))
    return moved


def buffer_directly(ns: Namespace, name: str, waiting: list[tuple[Event, str]]
                    ) -> list[tuple[Event, str]]:
    """For a connector that always batches: buffer events without delivery tasks.

    ``waiting`` holds (event, urgency) pairs; returns those it did not take (not batched for
    that event, or the connector is misconfigured): they get the usual delivery task, which
    reports what is wrong.
    """
    loaded = loading.load(client(), ns, "-", name)
    try:
        connector = loading.build(name, loaded, need_event=False)
        policies = [connector.batch_policy(dict(event), loaded.batching) for event, _ in waiting]
    except ApgConfigError:
        return waiting
    keep = [(pair, policy) for pair, policy in zip(waiting, policies, strict=True)
            if policy is not None and connector.wants(dict(pair[0]))]
    if keep:
        buffer(ns, name, [(event["event_id"], urgency) for (event, urgency), _ in keep],
               keep[0][1])
    kept = {id(pair) for pair, _ in keep}
    return [pair for pair in waiting if id(pair) not in kept]


# Flushing ---------------------------------------------------------------------------------------

def flush(namespace: str, connector: str, force: bool = False) -> str:
    """Send the next due batch of ``connector``'s buffer as a chord; reschedule the rest."""
    ns = Namespace.parse(namespace)
    claimed = buffers.claim(client(), ns, connector, force=force)
    if claimed["status"] == "wait":
        schedule_flush(ns, connector, claimed["wait_s"])
    if claimed["status"] != "batch":
        return str(claimed["status"])
    run_batch(ns, connector, claimed["batch_id"])
    if claimed["left"] >= claimed["size"] or (force and claimed["left"]):
        schedule_flush(ns, connector)
    elif claimed["left"]:
        schedule_flush(ns, connector, claimed["interval_s"])
    return "flushed"


def run_batch(ns: Namespace, connector: str, batch_id: str) -> None:
    """The chord of one claimed batch: prepare its events, then post them together."""
    held = buffers.batch(client(), ns, connector, batch_id)
    if held is None:
        return
    ids = held["ids"]
    header = [app.signature(PREPARE_TASK, args=[ns.name, connector, ids[i:i + PREPARE_CHUNK]])
              for i in range(0, len(ids), PREPARE_CHUNK)]
    chord(header)(app.signature(POST_TASK, args=[ns.name, connector, batch_id]))


def prepare(namespace: str, connector: str, event_ids: list[str]) -> Prepared:
    """Events as the connector wants them in a batch, each with its id."""
    ns = Namespace.parse(namespace)
    built = loading.build_connector(client(), ns, connector)
    pipe = client().pipeline(transaction=False)
    for event_id in event_ids:
        pipe.get(events.event_key(ns, event_id))
    stored: list[Any] = pipe.execute()
    return [[event_id, call(built.prepare, events.parse(text)) if text else None]
            for event_id, text in zip(event_ids, stored, strict=True)]


def post(chunks: list[Prepared], namespace: str, connector: str, batch_id: str) -> None:
    """Send a batch from the header's prepared chunks; what is left after a retryable failure
    runs again later. Two runs of one batch never post at once."""
    ns = Namespace.parse(namespace)
    if not buffers.take_posting(client(), ns, connector, batch_id):
        return  # another run of this batch is posting it right now
    try:
        prepared = {event_id: item for chunk in chunks for event_id, item in chunk}
        again = _post(prepared, ns, connector, batch_id)
    finally:
        buffers.release_posting(client(), ns, connector, batch_id)
    if again:
        run_batch(ns, connector, batch_id)  # eager mode retries at once, like Celery's own


def _post(prepared: dict[str, Any], ns: Namespace, connector: str, batch_id: str) -> bool:
    """Post the batch's events that were prepared; True when the rest must run again now."""
    held = buffers.batch(client(), ns, connector, batch_id)
    if held is None:
        return False  # already finished (a duplicate run of the body)
    ids, attempts = list(held["ids"]), int(held["attempts"]) + 1
    unprepared = [i for i in ids if i not in prepared]
    expired = [i for i in ids if i in prepared and prepared[i] is None]
    pairs = [(i, prepared[i]) for i in ids if prepared.get(i) is not None]
    mark(ns, expired, connector, Status.DEAD, "the event has expired", kind="expired")
    try:
        built = loading.build_connector(client(), ns, connector)
        _send_all(built, ns, connector, pairs)
    except RetryableError as exc:
        left = [i for i, _ in pairs] + unprepared
        return _retry_later(ns, connector, batch_id, left, attempts, exc)
    except (PermanentError, ConfigError) as exc:
        _dead(ns, connector, [i for i, _ in pairs], exc)
    if unprepared:  # prepared by no chunk of this run: they go with the next run
        buffers.update(client(), ns, connector, batch_id, unprepared, attempts - 1,
                       buffers.LEASE_S)
        scheduling.publish(RUN_TASK, [ns.name, connector, batch_id], {})
        return False
    buffers.finish(client(), ns, connector, batch_id)
    return False


def _send_all(built: BaseConnector, ns: Namespace, connector: str,
              pairs: list[tuple[str, Any]]) -> None:
    """Send, and after a partial failure send the rest; ``pairs`` shrinks as events land."""
    while pairs:
        try:
            call(built.send_batch, [item for _, item in pairs])
        except PartialFailure as partial:
            cut = partial.failed_index
            mark(ns, [i for i, _ in pairs[:cut]], connector, Status.DELIVERED)
            mark(ns, [pairs[cut][0]], connector, Status.DEAD, built.redact(str(partial.error)),
                 kind=kind_of(partial.error))
            del pairs[:cut + 1]
            continue
        except RetryableError as exc:
            done = getattr(exc, "accepted", 0)  # items the vendor took before it failed
            mark(ns, [i for i, _ in pairs[:done]], connector, Status.DELIVERED)
            del pairs[:done]
            raise
        mark(ns, [i for i, _ in pairs], connector, Status.DELIVERED)
        pairs.clear()


def _retry_later(ns: Namespace, connector: str, batch_id: str, left: list[str], attempts: int,
                 exc: RetryableError) -> bool:
    """Run the rest of the batch again after a backoff (a new chord), or give it up;
    True when it must run again at once (eager mode)."""
    policy = scheduling.bounded_for_eager(_policy(ns, connector))
    wait_s = backoff_s(attempts, exc.retry_after_s)
    rows = mark(ns, left, connector, Status.RETRYING, str(exc), wait_s, kind=kind_of(exc))
    if any(policy.gives_up(row) for row in rows):
        mark(ns, left, connector, Status.DEAD, str(exc), count=False, kind=kind_of(exc))
        log.warning("batch of %d events to %s dead: %s", len(left), connector, exc)
        buffers.finish(client(), ns, connector, batch_id)
        return False
    buffers.update(client(), ns, connector, batch_id, left, attempts, wait_s + buffers.LEASE_S)
    if scheduling.eager():
        return True
    scheduling.publish(RUN_TASK, [ns.name, connector, batch_id], {}, wait_s)
    return False


def _policy(ns: Namespace, connector: str) -> RetryPolicy:
    loaded = loading.load(client(), ns, "-", connector)
    return RetryPolicy.of(connector, loaded.retries, loaded.batching)


def _dead(ns: Namespace, connector: str, ids: list[str], exc: Exception) -> None:
    mark(ns, ids, connector, Status.DEAD, str(exc), kind=kind_of(exc))
    log.warning("batch of %d events to %s dead: %s", len(ids), connector, exc)


def mark(ns: Namespace, ids: list[str], connector: str, status: Status,
         error: str | None = None, retry_in_s: float | None = None, *, count: bool = True,
         kind: str | None = None) -> list[LedgerRow]:
    """Record the same outcome for every event of a batch (two round trips in all);
    ``count``: the outcome is of a new attempt; ``kind``: why it failed, in a word."""
    if not ids:
        return []
    pipe = client().pipeline(transaction=False)
    for event_id in ids:
        pipe.hget(ledger.rows_key(ns, event_id), connector)
    stored: list[Any] = pipe.execute()
    rows = []
    pipe = client().pipeline(transaction=False)
    for event_id, text in zip(ids, stored, strict=True):
        row = ledger.parse_row(text) or LedgerRow.new(connector, "low")
        row.attempts += 1 if count else 0
        ledger.finish(pipe, ns, event_id, row.mark(status, error, retry_in_s, kind))
        rows.append(row)
    pipe.execute()
    return rows
