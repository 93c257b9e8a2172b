"""How a task goes out: now, after a countdown, parked in Redis, or inline in eager mode.

This is the one place that decides it. A countdown longer than ``MAX_COUNTDOWN_S`` would be
redelivered by the Redis transport while it waits (its visibility timeout), so longer waits are
parked in a sorted set and published when due (by every relay's sweep). Eager mode runs tasks
inline at once; it has no timers, so a timer-only publish (a buffer's flush window) is skipped.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Retry

from config_core.state import parking
from connectors import registry
from workers.celery_app import app
from workers.redis_client import client
from workers.retrying import RetryPolicy
from workers.settings import MAX_COUNTDOWN_S

EAGER_MAX_RETRIES = 5
"""Eager mode retries at once, without waiting: a failing delivery gives up after this many."""


class Route(StrEnum):
    """How one publish went out."""

    NOW = "now"
    COUNTDOWN = "countdown"
    PARKED = "parked"
    INLINE = "inline"
    SKIPPED = "skipped"


def eager() -> bool:
    return bool(app.conf.task_always_eager)


def plan(delay_s: float, *, timer: bool = False) -> Route:
    """How a task due in ``delay_s`` goes out."""
    if eager():
        return Route.SKIPPED if timer and delay_s > 0 else Route.INLINE
    if delay_s <= 0:
        return Route.NOW
    return Route.COUNTDOWN if delay_s <= MAX_COUNTDOWN_S else Route.PARKED


def publish(name: str, args: list[Any], kwargs: dict[str, Any], delay_s: float = 0.0, *,
            timer: bool = False) -> Route:
    """Send task ``name`` to run in ``delay_s`` seconds, the way ``plan`` says."""
    route = plan(delay_s, timer=timer)
    if route is Route.PARKED:
        parking.park(client(), name, args, kwargs, delay_s)
    elif route is not Route.SKIPPED:
        countdown = delay_s if route is Route.COUNTDOWN else None
        app.tasks[name].apply_async(args=args, kwargs=kwargs, countdown=countdown)
    return route


def retry_later(task: Task, delay_s: float, args: list[Any], kwargs: dict[str, Any],
                reason: Exception) -> NoReturn:
    """Run the current task again in ``delay_s``: Celery's retry when the wait is short (or in
    eager mode), else parked. Either way ``Retry`` is raised with ``reason``, so the task's
    state is RETRY and its event (Flower) carries the reason."""
    if eager() or delay_s <= MAX_COUNTDOWN_S:
        raise task.retry(countdown=delay_s, exc=reason)
    parking.park(client(), task.name, args, kwargs, delay_s)
    raise Retry(f"parked for {delay_s:.0f} s", exc=reason, when=delay_s)


def bounded_for_eager(policy: RetryPolicy) -> RetryPolicy:
    """In eager mode retries do not wait, so a time window would never close: cap them."""
    if not eager():
        return policy
    limit = min(policy.max_retries if policy.max_retries is not None else EAGER_MAX_RETRIES,
                EAGER_MAX_RETRIES)
    return dataclasses.replace(policy, max_retries=limit)


def kind(connector: str) -> str:
    """The task family of a connector: its own name when built in, else ``custom``."""
    return connector if connector in registry.BUILTIN else "custom"


def delivery_task(connector: str) -> str:
    """The delivery task of a connector: one per built-in type, one shared by custom ones."""
    return f"workers.deliver.{kind(connector)}"


def follow_up_task(connector: str) -> str:
    """The follow-up task of a connector type."""
    return f"workers.follow_up.{kind(connector)}"
