"""What a delivery task does, as plain functions: load, send, record the outcome."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from celery.utils.time import get_exponential_backoff_interval

from config_core.errors import ApgConfigError, ConfigError
from config_core.layout import Namespace
from connectors import registry
from connectors.base import BaseConnector, call
from connectors.errors import PermanentError, RetryableError, Skipped
from workers import batching, ledger, performance
from workers.context import RedisContext
from workers.redis_client import client
from workers.scheduling import publish

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 5
"""Retries after the first attempt before a delivery is dead (``integrations.batching``)."""

TIME_LIMIT_S = int(os.environ.get("APGCFG_TASK_TIME_LIMIT_S", "40"))
"""Hard time limit of a delivery attempt (the pool kills it past this)."""

SOFT_TIME_LIMIT_S = max(1, TIME_LIMIT_S * 3 // 4)
"""Soft time limit: the attempt gets an exception it can report."""

LEASE_S = TIME_LIMIT_S + 5
"""While one worker sends a delivery, a duplicate copy of its task waits (longer than the
task's hard time limit, so a lease never expires under a running attempt)."""

BACKOFF_FACTOR_S = 2
BACKOFF_MAX_S = 600


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing, or retry after ``retry_in_s``."""

    status: str
    retry_in_s: float | None = None


@dataclass
class _Loaded:
    event: dict[str, Any] | None
    record: ledger.Record
    config: dict[str, Any] | None
    class_path: str | None
    batching: dict[str, Any]
    timed: bool = False

    @property
    def max_retries(self) -> int:
        configured = self.batching.get("max_retries")
        return DEFAULT_MAX_RETRIES if configured is None else int(configured)


def deliver(namespace: str, event_id: str, name: str, urgency: str) -> Outcome:
    """Attempt one delivery of ``event_id`` to connector ``name`` and record the outcome."""
    ns = Namespace.parse(namespace)
    loaded = _load(ns, event_id, name, urgency)
    record = loaded.record
    if record.status in ledger.FINAL:
        return Outcome(record.status)
    lease = f"{ns.prefix}lease:{event_id}:{name}"
    if not client().set(lease, "1", nx=True, ex=LEASE_S):
        # Another copy is sending (or died sending): look again once its lease runs out.
        return Outcome("in_flight", retry_in_s=max(1.0, float(client().ttl(lease) or 1)))
    started = time.monotonic()
    try:
        return _attempt(ns, event_id, name, loaded)
    finally:
        client().delete(lease)
        if loaded.timed and loaded.event:
            took_ms = (time.monotonic() - started) * 1000
            performance.record(client(), ns, [performance.sample("delivery", took_ms,
                                                                 loaded.event, name)])


def _attempt(ns: Namespace, event_id: str, name: str, loaded: _Loaded) -> Outcome:
    record = loaded.record
    record.attempts += 1
    connector: BaseConnector | None = None
    try:
        connector = _build(name, loaded)
        connector.context = RedisContext(client(), ns, loaded.event or {}, name,
                                         schedule_follow_up)
        policy = connector.batch_policy(loaded.event or {}, loaded.batching)
        if policy is not None and connector.wants(loaded.event or {}):
            record.attempts -= 1  # buffered: nothing is sent by this task
            return _buffer(ns, event_id, name, record, policy)
        result = _send(connector, loaded.event or {})
    except Skipped as exc:
        record.detail["skipped"] = _text(exc, connector)
        return _finish(ns, event_id, record.mark(ledger.SKIPPED))
    except (PermanentError, ConfigError) as exc:
        return _finish(ns, event_id, record.mark(ledger.DEAD, _text(exc, connector)))
    except RetryableError as exc:
        return _retry(ns, event_id, record, loaded.max_retries, _text(exc, connector),
                      exc.retry_after_s)
    except Exception as exc:  # noqa: BLE001 - a custom connector may raise anything
        log.warning("delivery %s to %s raised %s", event_id, name, type(exc).__name__)
        return _retry(ns, event_id, record, loaded.max_retries, _text(exc, connector), None)
    if isinstance(result, dict):
        record.detail.update(result)
    return _finish(ns, event_id, record.mark(ledger.DELIVERED))


def _buffer(ns: Namespace, event_id: str, name: str, record: ledger.Record,
            policy: tuple[int, float]) -> Outcome:
    """Park the event in the connector's buffer; a full buffer is flushed at once."""
    from workers.flush import schedule_flush

    waiting, since = batching.append(client(), ns, name, [event_id], policy)
    outcome = _finish(ns, event_id, record.mark(ledger.BATCHED))
    size, interval_s = policy
    if waiting >= size:
        schedule_flush(ns, name)
    elif waiting == 1:
        schedule_flush(ns, name, max(0.0, since + interval_s - time.time()))
    return outcome


def _send(connector: BaseConnector, event: dict[str, Any]) -> Any:
    if not connector.wants(event):
        raise Skipped("filtered by connector")
    result = call(connector.send_notification, event)
    if result is False:
        raise RetryableError(f"{connector.context.connector} connector reported a failure")
    return result


def schedule_follow_up(ns: Namespace, event_id: str, name: str, state: dict[str, Any],
                       delay_s: float) -> None:
    """Run ``follow_up(state)`` of connector ``name`` after ``delay_s``."""
    publish(follow_up_task_name(name), [ns.name, event_id, name, state], {}, delay_s)


def follow_up_task_name(connector: str) -> str:
    """The follow-up task of a connector type."""
    return f"workers.follow_up.{connector if connector in registry.BUILTIN else 'custom'}"


def follow_up(namespace: str, event_id: str, name: str, state: dict[str, Any]) -> str:
    """Run one follow-up step; schedule the next one if the connector asks for it."""
    ns = Namespace.parse(namespace)
    loaded = _load(ns, event_id, name, "medium")
    connector = _build(name, loaded)
    connector.context = RedisContext(client(), ns, loaded.event or {}, name, schedule_follow_up)
    step = call(connector.follow_up, state)
    if step is None:
        return "done"
    schedule_follow_up(ns, event_id, name, step.state, step.delay_s)
    return "scheduled"


def _load(ns: Namespace, event_id: str, name: str, urgency: str) -> _Loaded:
    pipe = client().pipeline(transaction=False)
    pipe.get(ns.event(event_id))
    pipe.hget(ns.deliveries(event_id), name)
    pipe.hget(ns.value(f"integrations.{name}"), "value")
    pipe.hget(ns.connectors, name)
    pipe.hget(ns.value("integrations.batching"), "value")
    pipe.hexists(ns.value(f"integrations.{performance.PROVIDER}"), "value")
    event, record, config, class_path, batching, timed = pipe.execute()
    return _Loaded(
        event=json.loads(event) if event else None,
        record=ledger.Record.from_json(record) if record else ledger.Record.new(name, urgency),
        config=json.loads(config) if config else None,
        class_path=class_path,
        batching=(json.loads(batching) or {}) if batching else {},
        timed=bool(timed),
    )


def build_connector(ns: Namespace, name: str) -> BaseConnector:
    """Connector ``name`` as configured now (for work not tied to one event)."""
    loaded = _load(ns, "-", name, "low")
    return _build(name, loaded, need_event=False)


def buffer_directly(ns: Namespace, name: str, waiting: list[tuple[dict[str, Any], str]]
                    ) -> list[tuple[dict[str, Any], str]]:
    """For a connector that always batches: buffer events without delivery tasks.

    ``waiting`` holds (event, urgency) pairs; returns those it could not buffer (not batched
    for that event, or the connector is misconfigured): they get the usual delivery task,
    which reports what is wrong.
    """
    loaded = _load(ns, "-", name, "low")
    try:
        connector = _build(name, loaded, need_event=False)
        policies = [connector.batch_policy(event, loaded.batching) for event, _ in waiting]
    except ApgConfigError:
        return waiting
    keep = [(pair, policy) for pair, policy in zip(waiting, policies, strict=True)
            if policy is not None and connector.wants(pair[0])]
    if keep:
        _buffer_many(ns, name, [pair for pair, _ in keep], keep[0][1])
    kept = {id(pair) for pair, _ in keep}
    return [pair for pair in waiting if id(pair) not in kept]


def _buffer_many(ns: Namespace, name: str, pairs: list[tuple[dict[str, Any], str]],
                 policy: tuple[int, float]) -> None:
    from workers.flush import schedule_flush

    ids = [event["event_id"] for event, _ in pairs]
    pipe = client().pipeline(transaction=False)
    for event, urgency in pairs:
        record = ledger.Record.new(name, urgency).mark(ledger.BATCHED)
        pipe.hset(ns.deliveries(event["event_id"]), name, record.to_json())
    pipe.execute()
    waiting, since = batching.append(client(), ns, name, ids, policy)
    size, interval_s = policy
    if waiting >= size:
        schedule_flush(ns, name)
    elif waiting == len(ids):  # these opened the window
        schedule_flush(ns, name, max(0.0, since + interval_s - time.time()))


def max_retries(ns: Namespace) -> int:
    """``integrations.batching.max_retries`` of ``ns``, or the default."""
    return _load(ns, "-", "-", "low").max_retries


def _build(name: str, loaded: _Loaded, need_event: bool = True) -> BaseConnector:
    if need_event and loaded.event is None:
        raise ConfigError("the event has expired or was never dispatched")
    if loaded.config is None:
        raise ConfigError(f"integrations.{name} is not configured any more")
    path = registry.BUILTIN.get(name) or loaded.class_path
    if path is None:
        raise ConfigError(f"no connector class is registered for {name!r}")
    return registry.load(path).from_stored(name, loaded.config)


def _retry(ns: Namespace, event_id: str, record: ledger.Record, max_retries: int, error: str,
           retry_after_s: float | None) -> Outcome:
    if record.attempts > max_retries:
        return _finish(ns, event_id, record.mark(ledger.DEAD, error))
    wait_s = backoff_s(record.attempts, retry_after_s)
    return _finish(ns, event_id, record.mark(ledger.RETRYING, error, retry_in_s=wait_s), wait_s)


def backoff_s(attempts: int, retry_after_s: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than the vendor's Retry-After."""
    jittered = get_exponential_backoff_interval(BACKOFF_FACTOR_S, attempts - 1, BACKOFF_MAX_S,
                                                full_jitter=True)
    return max(float(jittered), float(retry_after_s or 0.0))


def _finish(ns: Namespace, event_id: str, record: ledger.Record,
            retry_in_s: float | None = None) -> Outcome:
    ledger.save(client(), ns, event_id, record)
    return Outcome(record.status, retry_in_s)


def _text(exc: BaseException, connector: BaseConnector | None) -> str:
    text = str(exc) if isinstance(exc, (PermanentError, RetryableError, Skipped, ConfigError)) \
        else f"{type(exc).__name__}: {exc}"
    return connector.redact(text) if connector is not None else text
