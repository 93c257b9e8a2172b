"""Checks of the New Relic settings, run when ``integrations.newrelic`` is written."""

from __future__ import annotations

import re
from typing import Any

REGION_HOSTS = {
    "US": "https://insights-collector.newrelic.com",
    "EU": "https://insights-collector.eu01.nr-data.net",
}
"""Event API host of each New Relic data-centre region."""

DEFAULT_REGION = "US"

DEFAULT_EVENT_TYPES = {
    "config_change": "ConfigurationChanged",
    "config_error": "ConfigurationError",
    "performance": "ConfigurationPerformance",
    "health_check": "ConfigurationHealthCheck",
}
"""``eventType`` of each kind of event the connector sends; ``event_types`` overrides any."""

GUIDE_EVENT_TYPES = {k: v for k, v in DEFAULT_EVENT_TYPES.items() if k != "health_check"}
"""The defaults the guide shows (``health_check`` is this project's addition)."""

EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_:]{1,255}$")
"""New Relic's rule for ``eventType``: alphanumerics, ``_`` and ``:`` only, at most 255."""

MAX_NAME_CHARS = 255
MAX_VALUE_CHARS = 4096
"""New Relic's limits on an attribute's name and on a string value (characters)."""

MAX_CUSTOM_ATTRIBUTES = 200
"""``custom_attributes`` beyond this would crowd out the event's own attributes (254 in all)."""

RESERVED_NAMES = frozenset({"eventType", "timestamp", "accountId", "appId", "entity.guid",
                            "entity.name", "entity.type"})
"""Attribute names New Relic reserves: set by the connector, dropped, or typed specially."""

_TOKEN_RE = re.compile(r"^\S+$")


def check_account_id(value: Any) -> str | None:
    """The numeric account id (a string of digits, or an integer)."""
    text = str(value)
    if text.isdigit() and int(text) > 0:
        return None
    return "must be the numeric New Relic account id, e.g. '1234567'"


def check_api_key(value: str) -> str | None:
    """A non-empty key without spaces (it travels in the ``Api-Key`` header)."""
    if _TOKEN_RE.match(value):
        return None
    return "must be a New Relic License (ingest) key: one token, no spaces"


def check_region(value: str) -> str | None:
    """``US`` or ``EU`` (any case)."""
    if value.upper() in REGION_HOSTS:
        return None
    return f"must be one of {sorted(REGION_HOSTS)}"


def check_event_types(value: dict[str, Any]) -> str | None:
    """Known kinds only, each naming a valid ``eventType``."""
    unknown = sorted(set(value) - set(DEFAULT_EVENT_TYPES))
    if unknown:
        return f"has unknown kind(s) {unknown}; known: {sorted(DEFAULT_EVENT_TYPES)}"
    for kind, name in value.items():
        if not isinstance(name, str) or not EVENT_TYPE_RE.match(name):
            return (f"[{kind!r}] must be an eventType of 1 to 255 letters, digits, '_' or ':' "
                    f"(got {name!r})")
    return None


def check_custom_attributes(value: dict[str, Any]) -> str | None:
    """A flat dict of string or number values, with names New Relic accepts."""
    if len(value) > MAX_CUSTOM_ATTRIBUTES:
        return f"must have at most {MAX_CUSTOM_ATTRIBUTES} attributes, got {len(value)}"
    for name, item in value.items():
        problem = _attribute_problem(name, item)
        if problem:
            return f"[{name!r}] {problem}"
    return None


def _attribute_problem(name: Any, value: Any) -> str | None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        return f"name must be 1 to {MAX_NAME_CHARS} characters"
    if name in RESERVED_NAMES:
        return f"is reserved by New Relic (reserved: {sorted(RESERVED_NAMES)})"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"must be a string or a number (New Relic takes no {type(value).__name__})"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"must be at most {MAX_VALUE_CHARS} characters"
    return None
