"""Performance samples for New Relic: how long set_config, dispatch and deliveries took.

Samples are kept only in namespaces where ``integrations.newrelic`` is configured, in a capped
Redis list, and sent in batches by ``workers.flush_performance`` (celery beat, every 30 s).

- ``set_config``: from the writer's clock at the call to Redis' clock when the outbox entry
  was written (the stream entry id); both clocks are the same on one host.
- ``dispatch``: from that outbox entry to the relay publishing its delivery tasks.
- ``delivery``: one delivery attempt, in the worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import redis

from config_core.errors import ApgConfigError
from config_core.state import events, values
from config_core.state import samples as stored_samples
from config_core.state.keys import Namespace
from connectors.new_relic import performance_event
from workers import loading

log = logging.getLogger(__name__)

PROVIDER = loading.PERFORMANCE_PROVIDER
BATCH = 1000
"""Samples sent per flush and namespace."""


def wanted(client: redis.Redis, ns: Namespace) -> bool:
    """Whether ``ns`` sends performance events (New Relic is configured)."""
    return values.has_value(client, ns, f"integrations.{PROVIDER}")


def record(client: Any, ns: Namespace, samples: list[dict[str, Any]]) -> None:
    """Keep samples (``client`` may be a pipeline)."""
    stored_samples.push(client, ns, samples)


def sample(operation: str, duration_ms: float, event: Mapping[str, Any],
           connector: str | None = None) -> dict[str, Any]:
    """One sample of ``operation`` for ``event``."""
    return {"operation": operation, "duration_ms": max(0.0, round(duration_ms, 3)),
            "key": event.get("key"), "connector": connector, "event_id": event.get("event_id"),
            "timestamp": time.time()}


def write_samples(event: Mapping[str, Any], entry_id: str) -> list[dict[str, Any]]:
    """The set_config and dispatch samples of an event the relay is dispatching now."""
    written_ms = float(entry_id.split("-", 1)[0])
    called_ms = float(event.get("timestamp_epoch") or 0) * 1000
    return [sample("set_config", written_ms - called_ms, event),
            sample("dispatch", time.time() * 1000 - written_ms, event)]


def flush(client: redis.Redis) -> int:
    """Send waiting samples of every namespace to New Relic; return how many were sent."""
    sent = 0
    for ns in events.namespaces(client):
        if not wanted(client, ns):
            continue
        texts = stored_samples.take(client, ns, BATCH)
        if not texts:
            continue
        samples = [json.loads(text) for text in texts]
        try:
            connector: Any = loading.build_connector(client, ns, PROVIDER)
            connector.send_events([_event(connector, s) for s in samples])
            sent += len(samples)
        except ApgConfigError as exc:
            stored_samples.put_back(client, ns, texts)
            log.warning("performance events for %s not sent: %s", ns.name, exc)
    return sent


def _event(connector: Any, s: dict[str, Any]) -> dict[str, Any]:
    return performance_event(s, connector.config)
