"""Routing rules: which connectors hear about a key, and on which urgency queue.

A pure function of the key, the triggers and the configured connectors, tested without Redis.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from config_core.errors import ConfigError

URGENCIES = ("high", "medium", "low")
"""Urgency names, most urgent first; each is a Celery queue of the same name."""

DEFAULT_URGENCY = "medium"
"""Urgency used when no trigger is configured at all."""

_RANK = {name: rank for rank, name in enumerate(URGENCIES)}


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def matches(key: str, pattern: str) -> bool:
    """Glob match: ``*`` spans any characters, dots included; case-sensitive."""
    return _compiled(pattern).match(key) is not None


def matches_any(key: str, patterns: Iterable[str]) -> bool:
    """True when ``key`` matches at least one of ``patterns``."""
    return any(matches(key, pattern) for pattern in patterns)


def most_urgent(first: str, second: str) -> str:
    """The more urgent of two urgency names."""
    return first if _RANK[first] <= _RANK[second] else second


def route(key: str, triggers: Mapping[str, Any], configured: Iterable[str]) -> dict[str, str]:
    """Map each connector that should receive a change of ``key`` to its urgency.

    With no triggers, every configured connector gets every change on ``medium``. Otherwise each
    matching trigger adds its connectors; a connector named by several gets the most urgent queue.
    Connectors that are named but not configured are left out.
    """
    configured = set(configured)
    if not triggers:
        return {name: DEFAULT_URGENCY for name in sorted(configured)}
    routes: dict[str, str] = {}
    for trigger in triggers.values():
        if not matches_any(key, trigger.get("patterns", ())):
            continue
        urgency = trigger.get("urgency", DEFAULT_URGENCY)
        for name in trigger.get("connectors", ()):
            if name in configured:
                routes[name] = most_urgent(urgency, routes.get(name, urgency))
    return routes


APPROVAL_EVENTS = frozenset({"approval.requested", "approval.decided"})
"""Events of a change request; they also go to the request's ``approval_methods``."""


def route_event(event: Mapping[str, Any], triggers: Mapping[str, Any],
                configured: Iterable[str]) -> dict[str, str]:
    """``route`` by the event's key; an approval event also reaches each configured connector
    named in its ``approval_methods`` (``metadata.methods``), on ``medium`` unless a trigger
    already chose its queue."""
    configured = set(configured)
    routes = route(str(event.get("key") or ""), triggers, configured)
    if event.get("type") in APPROVAL_EVENTS:
        for name in (event.get("metadata") or {}).get("methods") or ():
            if name in configured:
                routes.setdefault(name, DEFAULT_URGENCY)
    return routes


def validate_notifications(value: Any) -> None:
    """Refuse a malformed ``integrations.notifications`` value, naming the bad field."""
    if not isinstance(value, dict):
        raise ConfigError("integrations.notifications must be a dict with a 'triggers' dict")
    unknown = set(value) - {"triggers"}
    if unknown:
        raise ConfigError(f"integrations.notifications has unknown field(s): {sorted(unknown)}")
    triggers = value.get("triggers", {})
    if not isinstance(triggers, dict):
        raise ConfigError("integrations.notifications.triggers must be a dict of named triggers")
    for name, trigger in triggers.items():
        _validate_trigger(f"integrations.notifications.triggers.{name}", trigger)


def _validate_trigger(where: str, trigger: Any) -> None:
    if not isinstance(trigger, dict):
        raise ConfigError(f"{where} must be a dict with patterns, connectors and urgency")
    unknown = set(trigger) - {"patterns", "connectors", "urgency"}
    if unknown:
        raise ConfigError(f"{where} has unknown field(s): {sorted(unknown)}")
    for field in ("patterns", "connectors"):
        items = trigger.get(field)
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ConfigError(f"{where}.{field} must be a list of non-empty strings")
    urgency = trigger.get("urgency", DEFAULT_URGENCY)
    if urgency not in _RANK:
        raise ConfigError(f"{where}.urgency must be one of {list(URGENCIES)}, got {urgency!r}")
