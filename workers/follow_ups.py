"""Follow-ups: work a connector goes on with after its delivery (a build polled to its result).

Each step is a task. Between steps the state lives in the delivery's ledger detail and in the
due index, so a step whose task was lost (its worker died, the broker lost it) is published
again by the relay's reconciler. A follow-up ends only with a recorded outcome: the connector's
own (a build's result, its ``build_timeout_s``), or, after ``MAX_FAILURES`` failed steps in a
row or a failure no retry can fix, ``connector.follow_up_failed`` and a ledger entry saying why.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from config_core.events import Event
from config_core.state import ledger, values
from config_core.state.keys import Namespace
from connectors.base import BaseConnector, call
from connectors.errors import RetryableError
from workers import loading, scheduling
from workers.context import RedisContext
from workers.redis_client import client
from workers.retrying import backoff_s

log = logging.getLogger(__name__)

MAX_FAILURES = int(os.environ.get("APGCFG_FOLLOW_UP_MAX_FAILURES", "20"))
"""Failed steps in a row after which a follow-up gives up (``APGCFG_FOLLOW_UP_MAX_FAILURES``)."""

FAILURES = "_failures"
"""State field counting failed steps in a row (never shown to the connector)."""


def schedule(ns: Namespace, event_id: str, name: str, state: dict[str, Any],
             delay_s: float) -> None:
    """Run ``follow_up(state)`` of connector ``name`` after ``delay_s``, on record."""
    ledger.follow_up_scheduled(client(), ns, event_id, name, state, time.time() + delay_s)
    scheduling.publish(scheduling.follow_up_task(name), [ns.name, event_id, name, state], {},
                       delay_s)


def run(namespace: str, event_id: str, name: str, state: dict[str, Any]) -> str:
    """One step: done, the next one scheduled, retried after a backoff, or given up."""
    ns = Namespace.parse(namespace)
    loaded = loading.load(client(), ns, event_id, name)
    try:
        connector = loading.build(name, loaded)
    except Exception as exc:  # noqa: BLE001 - recorded as the follow-up's outcome
        return _failed(ns, event_id, name, loaded.event, None, state, f"{exc}")
    connector.context = RedisContext(client(), ns, loaded.event or Event(), name, schedule)
    shown = {k: v for k, v in state.items() if k != FAILURES}
    try:
        step = call(connector.follow_up, shown)
    except RetryableError as exc:
        return _retry(ns, event_id, name, loaded.event, connector, state, exc)
    except Exception as exc:  # noqa: BLE001 - a custom connector may raise anything
        text = connector.redact(f"{type(exc).__name__}: {exc}")
        return _failed(ns, event_id, name, loaded.event, connector, state, text)
    if step is None:
        ledger.follow_up_ended(client(), ns, event_id, name, "done")
        return "done"
    schedule(ns, event_id, name, step.state, step.delay_s)
    return "scheduled"


def _retry(ns: Namespace, event_id: str, name: str, event: Event | None,
           connector: BaseConnector, state: dict[str, Any], exc: RetryableError) -> str:
    failures = int(state.get(FAILURES) or 0) + 1
    text = connector.redact(str(exc))
    limit = min(MAX_FAILURES, scheduling.EAGER_MAX_RETRIES) if scheduling.eager() else MAX_FAILURES
    if failures >= limit:
        return _failed(ns, event_id, name, event, connector, state,
                       f"{failures} failed step(s) in a row, the last: {text}")
    schedule(ns, event_id, name, {**state, FAILURES: failures},
             backoff_s(failures, exc.retry_after_s))
    return "retrying"


def _failed(ns: Namespace, event_id: str, name: str, event: Event | None,
            connector: BaseConnector | None, state: dict[str, Any], error: str) -> str:
    """Give up: the connector records its outcome, the ledger and history say why."""
    log.warning("follow-up of %s for %s gave up: %s", name, event_id, error)
    if connector is not None:
        try:
            call(connector.follow_up_failed, {k: v for k, v in state.items() if k != FAILURES},
                 error)
        except Exception as exc:  # noqa: BLE001 - the ledger still records the outcome
            error = f"{error}; recording it failed too: {type(exc).__name__}"
    ledger.follow_up_ended(client(), ns, event_id, name, "failed", error)
    if event is not None and connector is None:
        values.add_note(client(), ns, event["key"], event["version"],
                        {"connector": name, "event_id": event_id,
                         "follow_up": {"status": "failed", "error": error}})
    return "failed"
