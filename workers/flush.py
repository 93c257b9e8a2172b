"""Flushing a buffer: claim a batch, run its chord, record what became of each event."""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import chord

from config_core.errors import ConfigError
from config_core.layout import Namespace
from connectors.base import BaseConnector, call
from connectors.errors import PartialFailure, PermanentError, RetryableError
from workers import batching, ledger
from workers.redis_client import client
from workers.scheduling import publish

log = logging.getLogger(__name__)

FLUSH_TASK = "workers.flush"
PREPARE_TASK = "workers.batch_prepare"
POST_TASK = "workers.batch_post"
RUN_TASK = "workers.batch_run"

PREPARE_CHUNK = 50
"""Events one header task prepares: a task per event would cost more than the preparing."""


def schedule_flush(ns: Namespace, connector: str, delay_s: float = 0.0) -> None:
    """Look at ``connector``'s buffer after ``delay_s`` (at once: it is full)."""
    from workers.tasks import app

    if delay_s > 0 and app.conf.task_always_eager:
        return  # no timers in eager mode: a full buffer, or flush(force=True), sends
    publish(FLUSH_TASK, [ns.name, connector], {}, delay_s)


def flush(namespace: str, connector: str, force: bool = False) -> str:
    """Send the next due batch of ``connector``'s buffer as a chord; reschedule the rest."""
    ns = Namespace.parse(namespace)
    claimed = batching.claim(client(), ns, connector, force=force)
    if claimed["status"] == "wait":
        schedule_flush(ns, connector, claimed["wait_s"])
    if claimed["status"] != "batch":
        return claimed["status"]
    run_batch(ns, connector, claimed["batch_id"])
    if claimed["left"] >= claimed["size"] or (force and claimed["left"]):
        schedule_flush(ns, connector)
    elif claimed["left"]:
        schedule_flush(ns, connector, claimed["interval_s"])
    return "flushed"


def run_batch(ns: Namespace, connector: str, batch_id: str) -> None:
    """The chord of one claimed batch: prepare each event, then post them together."""
    from workers.tasks import app

    held = batching.batch(client(), ns, connector, batch_id)
    if held is None:
        return
    ids = held["ids"]
    header = [app.signature(PREPARE_TASK, args=[ns.name, connector, ids[i:i + PREPARE_CHUNK]])
              for i in range(0, len(ids), PREPARE_CHUNK)]
    chord(header)(app.signature(POST_TASK, args=[ns.name, connector, batch_id]))


def prepare(namespace: str, connector: str, event_ids: list[str]) -> list[Any]:
    """Events as the connector wants them in a batch, in order (None for an expired one)."""
    from workers.services import build_connector

    ns = Namespace.parse(namespace)
    built = build_connector(ns, connector)
    pipe = client().pipeline(transaction=False)
    for event_id in event_ids:
        pipe.get(ns.event(event_id))
    stored: list[Any] = pipe.execute()
    return [call(built.prepare, json.loads(text)) if text else None for text in stored]


def post(chunks: list[list[Any]], namespace: str, connector: str, batch_id: str) -> None:
    """Send a batch (the header's prepared chunks, in order); what is left after a
    retryable failure runs again later. Two runs of one batch never post at once."""
    ns = Namespace.parse(namespace)
    posting = f"{batching.batch_prefix(ns, connector)}{batch_id}:posting"
    if not client().set(posting, "1", nx=True, ex=batching.LEASE_S):
        return  # another run of this batch is posting it right now
    try:
        again = _post([item for chunk in chunks for item in chunk], ns, connector, batch_id)
    finally:
        client().delete(posting)
    if again:
        run_batch(ns, connector, batch_id)  # eager mode retries at once, like Celery's own


def _post(items: list[Any], ns: Namespace, connector: str, batch_id: str) -> bool:
    """Post once; True when the rest must run again right now (eager mode)."""
    from workers.services import backoff_s, build_connector, max_retries

    held = batching.batch(client(), ns, connector, batch_id)
    if held is None:
        return False  # already finished (a duplicate run of the body)
    ids, attempts = list(held["ids"]), int(held["attempts"]) + 1
    pairs = [(i, item) for i, item in zip(ids, items, strict=False) if item is not None]
    expired = [i for i, item in zip(ids, items, strict=False) if item is None]
    batching.mark(client(), ns, expired, connector, ledger.DEAD, "the event has expired")
    try:
        built = build_connector(ns, connector)
        _send_all(built, ns, connector, pairs)
    except RetryableError as exc:
        left = [i for i, _ in pairs]
        return _retry_later(ns, connector, batch_id, left, attempts, exc, max_retries(ns),
                            backoff_s)
    except (PermanentError, ConfigError) as exc:
        _dead(ns, connector, [i for i, _ in pairs], exc)
    batching.finish(client(), ns, connector, batch_id)
    return False


def _send_all(built: BaseConnector, ns: Namespace, connector: str,
              pairs: list[tuple[str, Any]]) -> None:
    """Send, and after a partial failure send the rest; ``pairs`` shrinks as events land."""
    while pairs:
        try:
            call(built.send_batch, [item for _, item in pairs])
        except PartialFailure as partial:
            cut = partial.failed_index
            batching.mark(client(), ns, [i for i, _ in pairs[:cut]], connector, ledger.DELIVERED)
            batching.mark(client(), ns, [pairs[cut][0]], connector, ledger.DEAD,
                          built.redact(str(partial.error)))
            del pairs[:cut + 1]
            continue
        except RetryableError as exc:
            done = getattr(exc, "accepted", 0)  # items the vendor took before it failed
            batching.mark(client(), ns, [i for i, _ in pairs[:done]], connector, ledger.DELIVERED)
            del pairs[:done]
            raise
        batching.mark(client(), ns, [i for i, _ in pairs], connector, ledger.DELIVERED)
        pairs.clear()


def _retry_later(ns: Namespace, connector: str, batch_id: str, left: list[str], attempts: int,
                 exc: RetryableError, limit: int, backoff: Any) -> bool:
    """Run the rest of the batch again after a backoff (a new chord), or give it up;
    True when it must run again at once (eager mode)."""
    if attempts > limit:
        _dead(ns, connector, left, exc)
        batching.finish(client(), ns, connector, batch_id)
        return False
    wait_s = backoff(attempts, exc.retry_after_s)
    batching.update(client(), ns, connector, batch_id, left, attempts,
                    wait_s + batching.LEASE_S)
    batching.mark(client(), ns, left, connector, ledger.RETRYING, str(exc), wait_s)
    from workers.tasks import app

    if app.conf.task_always_eager:
        return True
    publish(RUN_TASK, [ns.name, connector, batch_id], {}, wait_s)
    return False


def _dead(ns: Namespace, connector: str, ids: list[str], exc: Exception) -> None:
    batching.mark(client(), ns, ids, connector, ledger.DEAD, str(exc))
    log.warning("batch of %d events to %s dead: %s", len(ids), connector, exc)
