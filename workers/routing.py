"""Celery router: a delivery task runs on the queue named by its urgency."""

from __future__ import annotations

from typing import Any

from config_core.routing import DEFAULT_URGENCY, URGENCIES


def route_by_urgency(name: str, args: Any, kwargs: dict[str, Any] | None, options: Any,
                     task: Any = None, **extra: Any) -> dict[str, str] | None:
    """``workers.deliver.*`` tasks go to ``high``, ``medium`` or ``low`` by their urgency."""
    if not name.startswith("workers.deliver."):
        return None
    urgency = (kwargs or {}).get("urgency", DEFAULT_URGENCY)
    return {"queue": urgency if urgency in URGENCIES else DEFAULT_URGENCY}
