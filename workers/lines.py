"""Paused connectors: deliveries wait in the connector's line and go out in order on resume.

``join`` runs before an attempt: while the connector is paused, or while earlier deliveries
still wait, the delivery joins the line instead (its row ``waiting``, no attempt counted).
``drain`` (the task ``workers.connector_drain``) sends the line out head first, one delivery
at a time: a delivery that fails again stays at the head (its row ``waiting``) and the drain
runs again when its retry is due, so nothing overtakes it; a failure that pauses the connector
again stops the drain with the rest still waiting.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from config_core import settings as core_settings
from config_core.events import Change, Event
from config_core.health import UNHEALTHY
from config_core.state import health, ledger, values
from config_core.state.keys import Namespace
from config_core.state.ledger import LedgerRow, Status
from config_core.state.values import event_only, write_sync
from workers import scheduling
from workers.redis_client import client

log = logging.getLogger(__name__)

DRAIN_TASK = "workers.connector_drain"

DRAIN_BUDGET_S = 15.0
"""How long one drain task sends before it hands over to a fresh one (below the time limit)."""

JOIN_ROUNDS = 5


def join(ns: Namespace, event_id: str, name: str, urgency: str, row_text: str | None,
         event: Event | None, from_line: bool) -> bool:
    """Put the delivery in the connector's line when it must wait; True when it does."""
    script = client().register_script(health.join_script())
    score = float((event or {}).get("timestamp_epoch") or time.time())
    for _ in range(JOIN_ROUNDS):
        row = ledger.parse_row(row_text) or LedgerRow.new(name, urgency)
        if row.claim or (row.status in ledger.NOT_ATTEMPTED and row.status != Status.WAITING):
            return False  # an attempt holds it, or it is over: the claim decides
        row.status, row.updated_at, row.next_attempt_at = Status.WAITING, time.time(), None
        reply: Any = script(
            keys=[health.record_key(ns, name), health.line_key(ns, name),
                  ledger.rows_key(ns, event_id), ledger.due_key(ns)],
            args=[name, event_id, score, row_text or "", row.to_json(),
                  ledger.due_member(event_id, name), core_settings.EVENT_TTL_S,
                  "1" if from_line else "0"])
        if reply[0] != "changed":
            return bool(reply[0] == "waiting")
        row_text = reply[1] or None
    return False


def handoff(ns: Namespace, event_id: str, name: str) -> LedgerRow | None:
    """Move the head's row from waiting to pending, to be attempted; None when it is not
    waiting any more (delivered by a replay, expired)."""
    script = client().register_script(health.handoff_script())
    for _ in range(JOIN_ROUNDS):
        text: Any = client().hget(ledger.rows_key(ns, event_id), name)
        row = ledger.parse_row(text)
        if row is None or row.status != Status.WAITING:
            return None
        row.status, row.updated_at = Status.PENDING, time.time()
        due = row.updated_at + ledger.DUE_GRACE_S
        if script(keys=[ledger.rows_key(ns, event_id), ledger.due_key(ns)],
                  args=[name, text, row.to_json(), ledger.due_member(event_id, name), due]):
            return row
    return None


def drain(namespace: str, name: str, deliver: Any) -> str:
    """Send the line out in order (``deliver`` is ``workers.delivery.deliver``)."""
    ns = Namespace.parse(namespace)
    token = uuid.uuid4().hex
    if not health.take_drain(client(), ns, name, token):
        return "busy"
    status, hold_s = "failed", 0.0
    try:
        status, hold_s = _drain(ns, name, deliver)
        return status
    finally:
        if hold_s > 0:  # the head waits for its retry: no other drain before it is due
            client().set(health.drain_key(ns, name), token, ex=max(1, int(hold_s)))
        else:
            health.release_drain(client(), ns, name, token)


def _drain(ns: Namespace, name: str, deliver: Any) -> tuple[str, float]:
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_BUDGET_S:
        if health.is_paused(health.read(client(), ns, name)):
            return "paused", 0.0
        event_id = health.head(client(), ns, name)
        if event_id is None:
            return "empty", 0.0
        row = handoff(ns, event_id, name)
        if row is None:
            health.leave(client(), ns, name, event_id)
            continue
        outcome = deliver(ns.name, event_id, name, row.urgency, from_line=True)
        if outcome.retry_in_s is None:
            health.leave(client(), ns, name, event_id)
            continue
        stored: Any = client().hget(ledger.rows_key(ns, event_id), name)
        join(ns, event_id, name, row.urgency, stored, None, from_line=False)
        schedule(ns, name, outcome.retry_in_s)
        return "waiting for a retry", outcome.retry_in_s
    schedule(ns, name)
    return "more to send", 0.0


def schedule(ns: Namespace, name: str, delay_s: float = 0.0) -> None:
    """Run a drain of ``name``'s line (in eager mode: now, inline)."""
    scheduling.publish(DRAIN_TASK, [ns.name, name], {}, delay_s)


def announce_pause(ns: Namespace, name: str, failures: int, error: str) -> None:
    """The connector was just paused by its failures: record the status and emit the event."""
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    previous = health.transition(client(), ns, name, "unhealthy", at)
    if previous in ("unhealthy", "error"):
        return
    reason = f"paused after {failures} failed deliveries in a row: {error}"[:500]
    change = Change(UNHEALTHY, ns.tenant, ns.environment, f"integrations.{name}", None,
                    f"health:{name}", reason,
                    {"connector": name, "status": "unhealthy", "previous_status": previous or None,
                     "error": reason, "paused": True, "consecutive_failures": failures})
    try:
        write_sync(client(), ns, event_only(change, "null"))
    except Exception as exc:  # noqa: BLE001 - the pause stands; the event is best effort
        log.warning("could not record %s for %s: %s", UNHEALTHY, name, exc)


def restart_stalled(redis_client: Any, ns: Namespace) -> int:
    """Drain the lines of connectors that are not paused but still have deliveries waiting
    and no drain running (its task was lost, or its worker died)."""
    started = 0
    keys = redis_client.zrangebylex(values.index_key(ns), "[integrations.", "[integrations.\xff")
    for name in {key.split(".", 1)[1] for key in keys if key.count(".") == 1}:
        if not redis_client.exists(health.line_key(ns, name)):
            continue
        if health.is_paused(health.read(redis_client, ns, name)):
            continue
        if redis_client.exists(health.drain_key(ns, name)):
            continue
        schedule(ns, name)
        started += 1
    return started
