"""The HEC event envelope of a configuration event (pure), fitted under a byte budget.

``build_envelope`` gives the guide's event (``time``; ``event.action``, ``config_key``,
``old_value``, ``new_value``, ``user_id``, ``tenant_id``, ``metadata.environment``,
``metadata.change_reason``) plus ``index``/``sourcetype``/``source`` when configured. Values
stay JSON (secret ones arrive already masked). An envelope too big for one request is
truncated in its longest values, never dropped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

MAX_REQUEST_BYTES = 900_000
"""Largest HEC request body we send: under Splunk Cloud's 1 MB, so Cloud and Enterprise agree."""

TRUNCATED = "...[truncated by apg-central-config]"
"""Appended to a value cut short to fit ``MAX_REQUEST_BYTES``."""

ENVELOPE_SETTINGS = ("index", "sourcetype", "source")
"""Config settings copied into every envelope when set (HEC's token defaults apply otherwise)."""


def build_envelope(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The HEC envelope for ``event`` under ``config``, at most ``MAX_REQUEST_BYTES`` encoded."""
    envelope: dict[str, Any] = {}
    moment = event_epoch(event)
    if moment is not None:
        envelope["time"] = moment
    envelope["event"] = build_event(event)
    envelope.update({name: config[name] for name in ENVELOPE_SETTINGS if config.get(name)})
    return fit_envelope(envelope, MAX_REQUEST_BYTES)


def build_event(event: dict[str, Any]) -> dict[str, Any]:
    """The ``event`` object of the envelope, in the guide's shape."""
    return {
        "action": action(event.get("type")),
        "config_key": event.get("key"),
        "old_value": event.get("old_value"),
        "new_value": event.get("new_value"),
        "user_id": event.get("changed_by"),
        "tenant_id": event.get("tenant"),
        "metadata": build_metadata(event),
    }


def build_metadata(event: dict[str, Any]) -> dict[str, Any]:
    """``environment`` and ``change_reason``, then the event's own metadata (e.g. ``error``)."""
    metadata: dict[str, Any] = {"environment": event.get("environment"),
                                "change_reason": event.get("reason")}
    for name, value in (event.get("metadata") or {}).items():
        metadata.setdefault(str(name), value)
    return metadata


def action(event_type: Any) -> str:
    """``config.changed`` → ``config_changed`` (``config_deleted``, ``config_error``, ...)."""
    return str(event_type or "unknown").replace(".", "_")


def event_epoch(event: dict[str, Any]) -> float | None:
    """The event's time in epoch seconds (milliseconds kept), from the epoch or ISO field."""
    value = event.get("timestamp_epoch")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value), 3)
    text = event.get("timestamp")
    if not isinstance(text, str):
        return None
    try:
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp(), 3)
    except ValueError:
        return None


def encode(envelope: Any) -> bytes:
    """One envelope as HEC reads it: compact UTF-8 JSON."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


def fit_envelope(envelope: dict[str, Any], limit: int) -> dict[str, Any]:
    """``envelope``, its longest event values cut to the largest length that fits ``limit``."""
    if len(encode(envelope)) <= limit:
        return envelope
    leaves = _leaves(envelope.get("event"))
    low, high = 0, len(encode(envelope))
    while low < high:
        cap = (low + high + 1) // 2
        if len(encode({**envelope, "event": _capped(leaves, cap)})) <= limit:
            low = cap
        else:
            high = cap - 1
    return {**envelope, "event": _capped(leaves, low)}


Leaf = tuple[Any, str]
"""A value and its text (itself for a string, else its JSON), computed once."""


def _leaves(event: Any) -> Any:
    """The event's values (and its metadata's) as ``Leaf``s; a whole value is one leaf."""
    if not isinstance(event, dict):
        return _leaf(event)
    return {name: ({str(k): _leaf(v) for k, v in value.items()}
                   if name == "metadata" and isinstance(value, dict) else _leaf(value))
            for name, value in event.items()}


def _leaf(value: Any) -> Leaf:
    return value, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _capped(leaves: Any, cap: int) -> Any:
    if isinstance(leaves, dict):
        return {name: _capped(item, cap) for name, item in leaves.items()}
    value, text = leaves
    return value if len(text) <= cap else text[:cap] + TRUNCATED
