"""Formatting shared by the chat connectors: titles, value rendering, time, truncation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from config_core.routing import matches_any

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


DIGEST_TYPES = frozenset({"config.changed", "config.deleted"})
"""Event types a chat digest may hold back; anything else goes out on its own."""


def digest_policy(event: dict[str, Any], batching: dict[str, Any],
                  critical: bool) -> tuple[int, float] | None:
    """``(batch_size, batch_timeout)`` when ``integrations.batching`` asks for chat digests.

    Off until both are set; high-urgency and critical changes (those that mention people)
    and non-change events are never held back.
    """
    size, timeout = batching.get("batch_size"), batching.get("batch_timeout")
    if not size or not timeout or size < 2:
        return None
    if critical or event.get("urgency") == "high" or event.get("type") not in DIGEST_TYPES:
        return None
    return int(size), float(timeout)


class DigestPolicy:
    """Mixin for chat connectors: hold changes back for a digest when batching is on."""

    config: dict[str, Any]

    def batch_policy(self, event: dict[str, Any], batching: dict[str, Any]
                     ) -> tuple[int, float] | None:
        critical = matches_any(str(event.get("key", "")),
                               self.config.get("critical_patterns") or ())
        return digest_policy(event, batching, critical)


def digest_line(event: dict[str, Any], value_limit: int = 120) -> str:
    """One change in a digest: key, old → new, who (values shortened)."""
    old = truncate(render_value(event.get("old_value")), value_limit)
    new = ("(deleted)" if event.get("type") == "config.deleted"
           else truncate(render_value(event.get("new_value")), value_limit))
    who = event.get("changed_by") or "unknown"
    return f"{event.get('key')}: {old} → {new} ({who})"


def digest_title(count: int) -> str:
    return f"🔧 {count} Configuration Changes"


def fit_lines(lines: list[str], limit: int) -> str:
    """Newline-joined ``lines`` within ``limit`` characters, saying how many were left out."""
    shown: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        more = f"… and {len(lines) - index} more"
        if used + len(line) + 1 > limit - len(more) - 1:
            return "\n".join([*shown, more])
        shown.append(line)
        used += len(line) + 1
    return "\n".join(shown)


def guide_rows(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The guide's message fields in order (Key ... Time), then Reason when there is one."""
    rows = [
        ("Key", render_value(event.get("key"))),
        ("Old Value", render_value(event.get("old_value"))),
        ("New Value", render_value(event.get("new_value"))),
        ("Changed By", render_value(event.get("changed_by"))),
        ("Environment", render_value(event.get("environment"))),
        ("Time", readable_time(event)),
    ]
    if event.get("reason"):
        rows.append(("Reason", render_value(event["reason"])))
    return rows
