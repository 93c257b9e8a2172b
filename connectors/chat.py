"""Formatting shared by the chat connectors: titles, value rendering, time, truncation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

ELLIPSIS = "…"
"""Ends a truncated text."""

TITLES = {"config.changed": "🔧 Configuration Changed", "config.deleted": "🗑️ Configuration Deleted"}
"""Message titles of the event types the guide shows."""


def render_value(value: Any) -> str:
    """Strings as they are (blank ones quoted), None as ``(none)``, anything else compact JSON."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value if value.strip() else json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def readable_time(event: dict[str, Any]) -> str:
    """The event's time as ``2025-01-01 14:30:00 UTC``."""
    moment = event_time(event)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "(unknown)"


def event_time(event: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(event.get("timestamp")))
    except ValueError:
        epoch = event.get("timestamp_epoch")
        if isinstance(epoch, (int, float)) and not isinstance(epoch, bool):
            return datetime.fromtimestamp(epoch, UTC)
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def event_title(event_type: str | None) -> str:
    """The message title for an event type."""
    if event_type in TITLES:
        return TITLES[event_type]
    words = re.sub(r"[._-]+", " ", event_type or "event").strip()
    return "🔔 " + words.title()
