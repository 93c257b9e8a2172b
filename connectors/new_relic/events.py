"""Pure builders of New Relic custom events: configuration changes, errors, performance.

Each builder takes the project's event (or a timing sample) and the connector config and
returns one flat event, already within New Relic's limits (see ``limits.limit_event``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from connectors.errors import Skipped
from connectors.new_relic.checks import DEFAULT_EVENT_TYPES
from connectors.new_relic.limits import limit_event

Attributes = list[tuple[str, Any]]

CHANGE_TYPES = frozenset({"config.changed", "config.deleted"})
"""Events sent as ``event_types.config_change`` (the guide's custom event)."""

ERROR_TYPE = "config.error"
"""Events sent as ``event_types.config_error``."""

OPERATIONS = frozenset({"set_config", "dispatch", "delivery"})
"""The operations a performance sample may time."""

MAX_INT = 2**63 - 1
"""Larger integers are sent as strings (New Relic stores numbers as 64-bit)."""


def event_type(config: dict[str, Any], kind: str) -> str:
    """The configured ``eventType`` for ``kind`` (``config_change``, ``config_error``...)."""
    chosen = (config.get("event_types") or {}).get(kind)
    return str(chosen or DEFAULT_EVENT_TYPES[kind])


def build_event(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The custom event for a change (the guide's shape) or a ``config.error``.

    Raises ``Skipped`` for other event types.
    """
    kind = event.get("type")
    if kind in CHANGE_TYPES:
        attributes = _change_attributes(event, config)
    elif kind == ERROR_TYPE:
        attributes = _error_attributes(event, config)
    else:
        raise Skipped(f"New Relic records config.changed, config.deleted and config.error "
                      f"events, not {kind}")
    return _finish(attributes, config)


def _change_attributes(event: dict[str, Any], config: dict[str, Any]) -> Attributes:
    return [
        ("eventType", event_type(config, "config_change")),
        ("timestamp", epoch_s(event)),
        ("configKey", event.get("key")),
        ("oldValue", event.get("old_value")),
        ("newValue", event.get("new_value")),
        ("userId", event.get("changed_by")),
        ("environment", event.get("environment")),
        ("changeReason", event.get("reason")),
        ("changeType", event.get("type")),
        ("version", event.get("version")),
        ("tenant", event.get("tenant")),
        ("urgency", event.get("urgency")),
        ("eventId", event.get("event_id")),
    ]


def _error_attributes(event: dict[str, Any], config: dict[str, Any]) -> Attributes:
    metadata = event.get("metadata") or {}
    return [
        ("eventType", event_type(config, "config_error")),
        ("timestamp", epoch_s(event)),
        ("configKey", event.get("key")),
        ("error", metadata.get("error")),
        ("errorKind", metadata.get("error_kind")),
        ("userId", event.get("changed_by")),
        ("environment", event.get("environment")),
        ("schemaPattern", metadata.get("schema_pattern")),
        ("tenant", event.get("tenant")),
        ("eventId", event.get("event_id")),
    ]


def performance_event(sample: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A ``event_types.performance`` event: how long one operation took.

    ``sample``: ``operation`` (set_config, dispatch or delivery), ``duration_ms``, ``key``,
    ``connector`` (None unless a delivery), ``event_id``, ``timestamp`` (epoch seconds).
    """
    operation = sample.get("operation")
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {sorted(OPERATIONS)}, got {operation!r}")
    duration = sample.get("duration_ms")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise ValueError(f"duration_ms must be a number, got {duration!r}")
    return _finish([
        ("eventType", event_type(config, "performance")),
        ("timestamp", _int_or_none(sample.get("timestamp"))),
        ("operation", operation),
        ("durationMs", round(float(duration), 3)),
        ("configKey", sample.get("key")),
        ("connector", sample.get("connector")),
        ("eventId", sample.get("event_id")),
    ], config)


def health_event(config: dict[str, Any], now_s: float) -> dict[str, Any]:
    """The one small event ``health_check`` posts (``event_types.health_check``)."""
    return _finish([("eventType", event_type(config, "health_check")),
                    ("timestamp", int(now_s)), ("source", "apg-central-config")], config)


def _finish(attributes: Attributes, config: dict[str, Any]) -> dict[str, Any]:
    """Flat scalar values, None dropped, then ``custom_attributes`` that do not clash."""
    flat = {name: attribute_value(value) for name, value in attributes}
    event = {name: value for name, value in flat.items() if value is not None}
    for name, value in _custom(config, set(flat)):
        event[name] = value
    return limit_event(event)


def _custom(config: dict[str, Any], taken: set[str]) -> Iterable[tuple[str, Any]]:
    for name, value in (config.get("custom_attributes") or {}).items():
        scalar = attribute_value(value)
        if name not in taken and scalar is not None:
            yield str(name), scalar


def attribute_value(value: Any) -> str | int | float | None:
    """``value`` as New Relic takes it: strings and finite numbers as they are, booleans as
    ``"true"``/``"false"``, lists and dicts as compact JSON text, None as None (omitted)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value if -MAX_INT - 1 <= value <= MAX_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      default=str)


def epoch_s(event: dict[str, Any]) -> int | None:
    """The event's time as integer epoch seconds (``timestamp_epoch``, else the ISO time)."""
    epoch = _int_or_none(event.get("timestamp_epoch"))
    if epoch is not None:
        return epoch
    try:
        return int(datetime.fromisoformat(str(event.get("timestamp"))).timestamp())
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)
