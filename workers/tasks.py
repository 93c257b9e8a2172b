"""Celery tasks: thin wrappers that take ids and call plain functions."""

from __future__ import annotations

from typing import Any

from celery import Task

from config_core.state.keys import Namespace
from connectors import registry
from workers import (
    batches,
    delivery,
    env_sync,
    follow_ups,
    health_checks,
    identity,
    lines,
    performance,
    rate_limits,
    scheduling,
)
from workers.celery_app import app
from workers.errors import DeliveryDead, DeliveryRetrying
from workers.redis_client import client

KINDS = [*registry.BUILTIN, "custom"]
"""Task families: one per built-in connector, one shared by custom connectors."""


def _deliver(self: Task, namespace: str, event_id: str, connector: str,
             urgency: str = "medium") -> str:
    """Deliver once. Delivered, skipped or batched: SUCCESS with that status; retrying: RETRY
    with the reason; dead: FAILURE with ``DeliveryDead`` and the reason."""
    outcome = delivery.deliver(namespace, event_id, connector, urgency)
    if outcome.status == "dead":
        raise DeliveryDead(connector, outcome.reason)
    if outcome.retry_in_s is None:
        return outcome.status
    scheduling.retry_later(self, outcome.retry_in_s, [namespace, event_id, connector],
                           {"urgency": urgency}, DeliveryRetrying(connector, outcome.reason))


def _register_deliver(kind: str) -> Any:
    """One delivery task per connector type, so Flower rows and rate limits are per connector.

    ``throws``: a dead delivery is an expected outcome, logged on one line without a traceback.
    ``rate_limit``: the connector's default, until ``workers.rate_limits`` applies its config.
    """
    return app.task(_deliver, name=f"workers.deliver.{kind}", bind=True, max_retries=None,
                    rate_limit=rate_limits.default(kind),
                    acks_late=True, reject_on_worker_lost=True, throws=(DeliveryDead,),
                    soft_time_limit=delivery.SOFT_TIME_LIMIT_S, time_limit=delivery.TIME_LIMIT_S)


DELIVER_TASKS = {kind: _register_deliver(kind) for kind in KINDS}

def _follow_up(namespace: str, event_id: str, connector: str, state: dict[str, Any]) -> str:
    return follow_ups.run(namespace, event_id, connector, state)


def _register_follow_up(kind: str) -> Any:
    """Follow-ups (e.g. build status checks) rescheduled as tasks, never a sleeping worker."""
    return app.task(_follow_up, name=f"workers.follow_up.{kind}", acks_late=True,
                    reject_on_worker_lost=True, soft_time_limit=delivery.SOFT_TIME_LIMIT_S,
                    time_limit=delivery.TIME_LIMIT_S)


FOLLOW_UP_TASKS = {kind: _register_follow_up(kind) for kind in KINDS}


@app.task(name="workers.identity_tick")
def identity_tick() -> int:
    """Start the identity syncs that are due (celery beat runs this every minute)."""
    started = identity.due_syncs(client())
    for ns, provider in started:
        identity_sync.apply_async(args=[ns.name, provider])
    return len(started)


@app.task(name="workers.identity_sync", acks_late=True)
def identity_sync(namespace: str, provider: str) -> dict[str, Any]:
    """Sync one provider's directory (all or nothing)."""
    ns = Namespace.parse(namespace)
    try:
        return identity.sync(client(), ns, provider)
    except identity.SyncFailed as exc:
        return {"status": "error", "error": str(exc)}
    finally:
        identity.release(client(), ns, provider)


ENV_SYNC_TIME_LIMIT_S = 300
"""Hard time limit of one sync run (every key is a call or two to the target's API). The task
is acknowledged when it starts, so a run longer than the visibility timeout is not run twice;
a run lost with its worker is the next interval's."""


@app.task(name=env_sync.TASK, acks_late=False, soft_time_limit=ENV_SYNC_TIME_LIMIT_S - 30,
          time_limit=ENV_SYNC_TIME_LIMIT_S)
def env_sync_run(namespace: str, target: str) -> dict[str, Any]:
    """Push the keys ``target`` syncs from ``namespace`` (published by the relay's sweep)."""
    return env_sync.run(client(), Namespace.parse(namespace), target)


@app.task(name=batches.FLUSH_TASK)
def flush_buffer(namespace: str, connector: str, force: bool = False) -> str:
    """Send the next due batch of a connector's buffer (as a chord)."""
    return batches.flush(namespace, connector, force)


@app.task(name=batches.PREPARE_TASK, ignore_result=False, acks_late=True)
def batch_prepare(namespace: str, connector: str, event_ids: list[str]) -> batches.Prepared:
    """Chord header: a chunk of events as the connector wants them in a batch."""
    return batches.prepare(namespace, connector, event_ids)


@app.task(name=batches.POST_TASK, ignore_result=False, acks_late=True,
          soft_time_limit=delivery.SOFT_TIME_LIMIT_S, time_limit=delivery.TIME_LIMIT_S)
def batch_post(chunks: list[batches.Prepared], namespace: str, connector: str,
               batch_id: str) -> None:
    """Chord body: send the prepared events together and record each one's outcome."""
    batches.post(chunks, namespace, connector, batch_id)


@app.task(name=batches.RUN_TASK)
def batch_run(namespace: str, connector: str, batch_id: str) -> None:
    """Run a claimed batch (again): after a retryable failure, or when its worker died."""
    batches.run_batch(Namespace.parse(namespace), connector, batch_id)


@app.task(name="workers.flush_performance")
def flush_performance() -> int:
    """Send waiting performance samples to New Relic (celery beat, every 30 s)."""
    return performance.flush(client())


@app.task(name=lines.DRAIN_TASK, acks_late=True, soft_time_limit=delivery.SOFT_TIME_LIMIT_S,
          time_limit=delivery.TIME_LIMIT_S)
def connector_drain(namespace: str, connector: str) -> str:
    """Send a resumed connector's waiting deliveries out, in order."""
    return lines.drain(namespace, connector, delivery.deliver)


@app.task(name="workers.connector_health_tick")
def connector_health_tick() -> int:
    """Check every connector of every namespace (celery beat, every
    ``APGCFG_HEALTH_CHECK_INTERVAL_S``): record each status, emit its changes, resume paused
    connectors whose vendor check passes."""
    return health_checks.tick(client())
