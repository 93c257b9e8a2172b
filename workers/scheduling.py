"""Publish a task now, after a short countdown, or parked in Redis when the wait is long."""

from __future__ import annotations

from typing import Any

from workers import parking
from workers.redis_client import client
from workers.settings import MAX_COUNTDOWN_S


def publish(name: str, args: list[Any], kwargs: dict[str, Any], delay_s: float = 0.0) -> None:
    """Send task ``name``; a delay past ``MAX_COUNTDOWN_S`` is parked, never a long countdown."""
    from workers.tasks import app

    if delay_s > MAX_COUNTDOWN_S and not app.conf.task_always_eager:
        parking.park(client(), name, args, kwargs, delay_s)
        return
    app.tasks[name].apply_async(args=args, kwargs=kwargs,
                                countdown=delay_s if delay_s > 0 else None)
