"""One delivery attempt as plain functions: load, claim, send, record the outcome.

The ledger row is claimed (compare and set, the attempt counted) before anything is sent, and
the outcome is written before the claim is released, so a delivery whose process died while
sending is known to be ``in_doubt``: it is sent again only by connectors that can tell whether
the vendor already has it (``retry_unknown_outcome``); the others end ``dead`` with the reason,
never sent twice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from config_core.errors import ApgConfigError, ConfigError
from config_core.events import Event
from config_core.health import thresholds
from config_core.masking import redact, secret_strings
from config_core.state import breakers, health, ledger
from config_core.state.keys import Namespace
from config_core.state.ledger import LedgerRow, Status
from connectors.base import BaseConnector, call
from connectors.errors import (
    PermanentError,
    RateLimited,
    RetryableError,
    Skipped,
    TransportError,
    Unavailable,
    kind_of,
)
from workers import batches, follow_ups, lines, loading, performance, scheduling
from workers.context import RedisContext
from workers.redis_client import client
from workers.retrying import RetryPolicy, backoff_s

log = logging.getLogger(__name__)

TIME_LIMIT_S = int(os.environ.get("APGCFG_TASK_TIME_LIMIT_S", "40"))
"""Hard time limit of a delivery attempt (the pool kills it past this)."""

SOFT_TIME_LIMIT_S = max(1, TIME_LIMIT_S * 3 // 4)
"""Soft time limit: the attempt gets an exception it can report."""

LEASE_S = TIME_LIMIT_S + 5
"""How long an attempt holds its delivery: longer than the hard time limit, so a live attempt
never loses it; a duplicate task waits this long for an attempt whose process died."""

DIED = "the attempt died while sending (worker lost or hard time limit)"

BREAKER_OPEN = "breaker_open"
"""Error kind of a delivery waiting for its connector's circuit breaker."""

WORKER_LOST = "worker_lost"
"""Error kind of a delivery whose attempt died while sending."""

IN_DOUBT = (f"outcome unknown: {DIED} before it could record the vendor's answer; not sent "
            "again, which could post it twice (replay to send it anyway)")


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing, or run again after ``retry_in_s``.

    ``reason`` is the ledger's ``last_error`` (already without secrets): why the delivery is
    retrying or dead.
    """

    status: str
    retry_in_s: float | None = None
    reason: str = ""


def deliver(namespace: str, event_id: str, name: str, urgency: str, *,
            from_line: bool = False) -> Outcome:
    """Attempt one delivery of ``event_id`` to connector ``name`` and record the outcome.

    While the connector is paused (or earlier deliveries still wait for it) the delivery
    joins its line instead, not attempted; ``from_line`` is the line's own drain sending it.
    """
    ns = Namespace.parse(namespace)
    loaded = loading.load(client(), ns, event_id, name)
    connector, problem = _connector(ns, name, loaded)
    event = loaded.event or Event()
    try:
        if connector is not None and _buffered(ns, event_id, name, urgency, connector, loaded):
            return Outcome(str(Status.BATCHED))
    except Exception as exc:  # noqa: BLE001 - a connector's batch policy may raise anything
        connector, problem = None, _unusable(name, exc, loaded.config)
    must_wait = loaded.line or health.is_paused(loaded.record or {})
    if must_wait and lines.join(ns, event_id, name, urgency, loaded.row_text, loaded.event,
                                from_line):
        return Outcome(str(Status.WAITING))
    if loaded.breaker.open_for_s() and connector is not None and not scheduling.eager():
        return _wait_for_breaker(ns, event_id, name, urgency, loaded)
    taken = ledger.claim(client(), ns, event_id, name, urgency, LEASE_S, loaded.row_text)
    if taken.kind == "busy":
        return Outcome("in_flight", retry_in_s=max(1.0, taken.busy_for_s),
                       reason="another attempt of this delivery is sending")
    assert taken.row is not None
    if taken.kind == "final":
        return Outcome(str(taken.row.status), reason=taken.row.last_error or "")
    started = time.monotonic()
    policy = _policy(name, loaded)
    settled = _settle_doubt(connector, taken.row, policy) if taken.kind == "in_doubt" else None
    row, failure = ((settled, "") if settled is not None
                    else _attempt(connector, problem, event, taken.row, policy))
    pipe = client().pipeline(transaction=False)
    ledger.finish(pipe, ns, event_id, row, taken.token)
    if settled is None:
        _tell_health(pipe, ns, name, row, failure, loaded)
    replies = pipe.execute()
    if failure in (VENDOR, OTHER) and isinstance(replies[1], list) and replies[1][1]:
        lines.announce_pause(ns, name, int(replies[1][0]), row.last_error or "")
    if loaded.timed and loaded.event:
        took_ms = (time.monotonic() - started) * 1000
        performance.record(client(), ns, [performance.sample("delivery", took_ms, event, name)])
    return Outcome(str(row.status), _wait(row), row.last_error or "")


def _connector(ns: Namespace, name: str, loaded: loading.Loaded
               ) -> tuple[BaseConnector | None, Exception | None]:
    try:
        connector = loading.build(name, loaded)
    except Exception as exc:  # noqa: BLE001 - reported as the attempt's outcome
        return None, exc if isinstance(exc, ApgConfigError) else _unusable(name, exc, loaded.config)
    connector.context = RedisContext(client(), ns, loaded.event or Event(), name,
                                     follow_ups.schedule)
    return connector, None


def _unusable(name: str, exc: Exception, config: dict[str, Any] | None) -> ConfigError:
    """A stored config the connector cannot work with: no retry will change that. The text
    is scrubbed of the config's secrets (the connector could not be built to do it)."""
    text = redact(f"{type(exc).__name__}: {exc}", secret_strings(config or {}))
    return ConfigError(f"integrations.{name} cannot be used: {text}"[:500])


def _buffered(ns: Namespace, event_id: str, name: str, urgency: str,
              connector: BaseConnector, loaded: loading.Loaded) -> bool:
    """Put the event in the connector's buffer when it batches it (only from pending)."""
    event = loaded.event or Event()
    policy = connector.batch_policy(dict(event), loaded.batching)
    if policy is None or not connector.wants(dict(event)):
        return False
    return bool(batches.buffer(ns, name, [(event_id, urgency)], policy))


def _wait_for_breaker(ns: Namespace, event_id: str, name: str, urgency: str,
                      loaded: loading.Loaded) -> Outcome:
    """The vendor keeps failing: wait until its breaker lets attempts through (no attempt is
    counted; the retry window still runs, so an hour of this ends the delivery dead)."""
    row = ledger.parse_row(loaded.row_text) or LedgerRow.new(name, urgency)
    breaker = loaded.breaker
    if row.status in ledger.NOT_ATTEMPTED:
        return Outcome(str(row.status))
    if row.claim:  # an attempt is sending (or died sending): its outcome decides
        return Outcome("in_flight", retry_in_s=max(1.0, breaker.open_for_s()),
                       reason="another attempt of this delivery is sending")
    reason = (f"{name} is failing ({breaker.last_error}); waiting {breaker.open_for_s():.0f} s "
              "before trying it again")
    row.mark(Status.RETRYING, reason, retry_in_s=breaker.open_for_s() + random.uniform(0, 1),
             kind=BREAKER_OPEN)
    if _policy(name, loaded).gives_up(row):
        row.mark(Status.DEAD, reason, kind=BREAKER_OPEN)
    ledger.finish(client(), ns, event_id, row)
    return Outcome(str(row.status), _wait(row), row.last_error or "")


def _tell_health(pipe: Any, ns: Namespace, name: str, row: LedgerRow, failure: str,
                 loaded: loading.Loaded) -> None:
    """A delivery ends the failure streak (and closes the breaker); a failed attempt adds to
    it and may pause the connector; a transport failure or 5xx may open its breaker."""
    if row.status == Status.DELIVERED:
        health.succeeded(pipe, ns, name)
    elif failure in (VENDOR, OTHER):
        _, pause_after = thresholds(loaded.health)
        health.failed(pipe, ns, name, row.last_error or "", pause_after)
        if failure == VENDOR:
            breakers.vendor_failed(pipe, ns, name)


def _settle_doubt(connector: BaseConnector | None, row: LedgerRow, policy: RetryPolicy
                  ) -> LedgerRow | None:
    """An earlier attempt died while sending: end the delivery, or None to send again.

    A connector that cannot tell whether the vendor already has the event ends it dead with
    the reason. Others count the dead attempt as a failure and send again, unless the retry
    policy gives up.
    """
    if connector is not None and not connector.retry_unknown_outcome:
        return row.mark(Status.DEAD, IN_DOUBT, kind=WORKER_LOST)
    previous = dataclasses.replace(row, attempts=row.attempts - 1).mark(Status.RETRYING, DIED)
    row.first_failure_at, row.last_error = previous.first_failure_at, DIED
    if policy.gives_up(previous):
        return row.mark(Status.DEAD, f"{DIED}; given up after {previous.attempts} attempt(s)",
                        kind=WORKER_LOST)
    return None


THROTTLED = "throttled"
VENDOR = "vendor"
OTHER = "other"
"""How an attempt failed: rate limited (no sign of ill health: neither counts), no answer or a
5xx (counts, and towards the breaker), anything else (counts)."""


def _attempt(connector: BaseConnector | None, problem: Exception | None, event: Event,
             row: LedgerRow, policy: RetryPolicy) -> tuple[LedgerRow, str]:
    """Send once; the row marked with the outcome, and how it failed ("" when it did not)."""
    try:
        if connector is None:
            raise problem or ConfigError("the connector could not be built")
        result = _send(connector, event)
    except Skipped as exc:
        row.detail["skipped"] = _text(exc, connector)
        return row.mark(Status.SKIPPED), ""
    except (PermanentError, ConfigError) as exc:
        return row.mark(Status.DEAD, _text(exc, connector), kind=kind_of(exc)), OTHER
    except RetryableError as exc:
        kind = (VENDOR if isinstance(exc, (TransportError, Unavailable))
                else THROTTLED if isinstance(exc, RateLimited) else OTHER)
        return failed(row, policy, _text(exc, connector), exc.retry_after_s, kind_of(exc)), kind
    except Exception as exc:  # noqa: BLE001 - a custom connector may raise anything
        log.warning("delivery %s to %s raised %s", event.get("event_id"), row.connector,
                    type(exc).__name__)
        return failed(row, policy, _text(exc, connector), None, kind_of(exc)), OTHER
    if isinstance(result, dict):
        row.detail.update(result)
    return row.mark(Status.DELIVERED), ""


def failed(row: LedgerRow, policy: RetryPolicy, error: str,
           retry_after_s: float | None, kind: str | None = None) -> LedgerRow:
    """Mark a failed attempt: retrying after a backoff, or dead when the policy gives up;
    ``kind``: why, in a word (``connectors.errors.kind_of``)."""
    wait_s = backoff_s(row.attempts, retry_after_s)
    row.mark(Status.RETRYING, error, retry_in_s=wait_s, kind=kind)
    if policy.gives_up(row):
        row.mark(Status.DEAD, error, kind=kind)
    return row


def _send(connector: BaseConnector, event: Event) -> Any:
    if not connector.wants(dict(event)):
        raise Skipped("filtered by connector")
    result = call(connector.send_notification, dict(event))
    if result is False:
        raise RetryableError(f"{connector.context.connector} connector reported a failure")
    return result


def _policy(name: str, loaded: loading.Loaded) -> RetryPolicy:
    policy = RetryPolicy.of(name, loaded.retries, loaded.batching)
    return scheduling.bounded_for_eager(policy)


def _wait(row: LedgerRow) -> float | None:
    if row.status != Status.RETRYING or row.next_attempt_at is None:
        return None
    return max(0.0, row.next_attempt_at - time.time())


def _text(exc: BaseException, connector: BaseConnector | None) -> str:
    known = (PermanentError, RetryableError, Skipped, ConfigError)
    text = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
    return connector.redact(text) if connector is not None else text
