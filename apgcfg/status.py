"""``apgcfg status``: what an operator looks at first.

Queue depth per urgency (the Celery queues in the broker's Redis, and the tasks workers hold
unacknowledged), parked deliveries, this namespace's outbox backlog, open and dead deliveries
(per connector, with the newest error), the relays seen (their heartbeats) and the workers that
answer a ping with the queues they consume.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

from celery import Celery
from kombu.transport.redis import PRIORITY_STEPS, Channel

from apgcfg.render import View, fields, table, when
from config_core.service import ConfigService
from config_core.state import parking
from workers import app as celery_app
from workers.redis_client import connect

QUEUES = ("high", "medium", "low")
"""The urgency queues, most urgent first."""

DEAD_SCANNED = 1000
"""Newest dead deliveries counted per connector."""


async def gather(service: ConfigService, timeout_s: float) -> dict[str, Any]:
    """The status document (what ``--json`` prints)."""
    found = await service.status()
    found["dead_by_connector"] = await _dead_by_connector(service)
    found["parked"] = await service.store.redis.zcard(parking.PARKED_KEY)
    broker_url = os.environ.get("CELERY_BROKER_URL") or service.redis_url
    broker, workers = await asyncio.gather(
        asyncio.to_thread(queue_depths, broker_url),
        asyncio.to_thread(workers_seen, broker_url, timeout_s))
    return {**found, **broker, "workers": workers}


def queue_depths(broker_url: str) -> dict[str, Any]:
    """Tasks waiting in each urgency queue, and held by workers (unacknowledged)."""
    client = connect(broker_url)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for step in PRIORITY_STEPS:
                pipe.llen(f"{queue}{Channel.sep}{step}" if step else queue)
        pipe.hlen(Channel.unacked_key)
        *lengths, unacked = pipe.execute()
    finally:
        client.close()
    steps = len(PRIORITY_STEPS)
    queues = {q: sum(lengths[i * steps:(i + 1) * steps]) for i, q in enumerate(QUEUES)}
    return {"queues": queues, "unacked": unacked}


def workers_seen(broker_url: str, timeout_s: float) -> list[dict[str, Any]]:
    """Workers that answer within ``timeout_s``, each with the queues it consumes.

    A Celery app of its own: ``workers.app`` publishes through a producer pool bound to the
    broker it was configured with at import, which ``--redis-url`` does not change.
    """
    app = Celery("apgcfg-status", broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = celery_app.conf.broker_transport_options
    try:
        replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    finally:
        app.close()
    return [{"name": name, "queues": sorted(q["name"] for q in queues)}
            for name, queues in sorted(replies.items())]


async def _dead_by_connector(service: ConfigService) -> dict[str, dict[str, Any]]:
    dead = await service.store.dead(DEAD_SCANNED)
    counts = Counter(connector for _, connector in dead)
    newest: dict[str, str] = {}
    for event_id, connector in dead:
        newest.setdefault(connector, event_id)
    found = {}
    for connector, event_id in newest.items():
        rows = await service.store.deliveries(event_id)
        row: dict[str, Any] = next((r for r in rows if r["connector"] == connector), {})
        found[connector] = {"dead": counts[connector], "last_error": row.get("last_error"),
                            "last_dead_at": row.get("updated_at")}
    return found


def view(status: dict[str, Any]) -> View:
    """Human layout: a summary, then a table per section."""
    queues = status["queues"]
    summary = fields({
        "namespace": status["namespace"],
        "queues": "  ".join(f"{q} {queues[q]}" for q in QUEUES),
        "in flight": f"{status['unacked']} unacked, {status['parked']} parked",
        "outbox": f"{status['outbox']} waiting",
        "deliveries": f"{status['open_deliveries']} open, {status['dead']} dead"})
    dead = [{"connector": name, **row, "last_dead_at": when(row["last_dead_at"])}
            for name, row in sorted(status["dead_by_connector"].items())]
    relays = [{"consumer": r["consumer"], "alive": "yes" if r["alive"] else "NO",
               "last_seen": when(r.get("at")), "dispatched": r.get("dispatched"),
               "errors": r.get("errors"), "last_error": r.get("last_error")}
              for r in status["relays"]]
    parts = [summary,
             "\nDEAD BY CONNECTOR\n" + (table(dead) if dead else "(none)"),
             "\nRELAYS\n" + (table(relays) if relays else "(none seen)"),
             "\nWORKERS\n" + (table(status["workers"]) if status["workers"] else "(none answered)")]
    return View(status, "\n".join(parts))
