"""New Relic's Event API limits, met by truncating and splitting, never by dropping an event.

Sizes are measured on the exact bytes sent before gzip (compact UTF-8 JSON), which is the
stricter reading of "1 MB per POST".
"""

from __future__ import annotations

import json
from typing import Any

from connectors.chat import truncate
from connectors.new_relic.checks import MAX_NAME_CHARS, MAX_VALUE_CHARS

MAX_PAYLOAD_BYTES = 1_000_000
"""New Relic's limit per POST: 10^6 bytes."""

MAX_ATTRIBUTES = 254
"""Attributes per event, ``eventType`` included: one page says 255, another 254; the lower."""

MAX_EVENT_AGE_S = 23 * 3600
"""New Relic drops events whose ``timestamp`` is more than 24 h old; an hour kept in hand."""

ORIGINAL_TIMESTAMP = "originalTimestamp"
"""Where an event older than ``MAX_EVENT_AGE_S`` keeps its own time (``timestamp`` is left to
New Relic, which then uses the time it received the event)."""

_ARRAY_OVERHEAD = 2
"""The ``[`` and ``]`` around a batch."""

_PINNED = frozenset({"eventType", "timestamp"})
"""Attributes never shortened to fit the payload limit."""


def encode(events: list[dict[str, Any]]) -> bytes:
    """The request body before gzip: compact UTF-8 JSON."""
    return json.dumps(events, ensure_ascii=False, separators=(",", ":")).encode()


def event_size(event: dict[str, Any]) -> int:
    """Bytes ``event`` adds to a batch (without the comma between events)."""
    return len(encode([event])) - _ARRAY_OVERHEAD


def limit_event(event: dict[str, Any], max_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """``event`` within every per-event limit: names ≤ 255, string values ≤ 4096 characters
    (ending in "…" when cut), at most 254 attributes, and alone it fits one POST."""
    limited: dict[str, Any] = {}
    for name, value in event.items():
        if len(limited) >= MAX_ATTRIBUTES:
            break
        name = truncate(str(name), MAX_NAME_CHARS)
        limited.setdefault(name, truncate(value, MAX_VALUE_CHARS)
                           if isinstance(value, str) else value)
    if event_size(limited) + _ARRAY_OVERHEAD > max_bytes:
        limited = _shrink(limited, max_bytes - _ARRAY_OVERHEAD)
    return limited


def _shrink(event: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Cut the longest string values to one common length so the event fits ``max_bytes``."""

    def capped(cap: int) -> dict[str, Any]:
        return {k: truncate(v, cap) if isinstance(v, str) and k not in _PINNED else v
                for k, v in event.items()}

    low, high = 1, MAX_VALUE_CHARS
    while low < high:
        cap = (low + high + 1) // 2
        if event_size(capped(cap)) <= max_bytes:
            low = cap
        else:
            high = cap - 1
    return capped(low)


def within_window(event: dict[str, Any], now_s: float) -> dict[str, Any]:
    """``event`` with a ``timestamp`` too old for New Relic moved to ``originalTimestamp``."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, int) or now_s - _as_seconds(stamp) <= MAX_EVENT_AGE_S:
        return event
    kept = {k: v for k, v in event.items() if k != "timestamp"}
    kept.setdefault(ORIGINAL_TIMESTAMP, stamp)
    return kept


def _as_seconds(stamp: int) -> float:
    return stamp / 1000 if stamp > 10**11 else float(stamp)


def split_batches(events: list[dict[str, Any]],
                  limit_bytes: int = MAX_PAYLOAD_BYTES) -> list[list[dict[str, Any]]]:
    """``events`` in order, grouped into as few batches as fit ``limit_bytes`` each.

    An event too big to share a batch goes alone (``limit_event`` makes every event fit).
    """
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = _ARRAY_OVERHEAD
    for event in events:
        added = event_size(event) + (1 if current else 0)
        if current and size + added > limit_bytes:
            batches.append(current)
            current, size = [], _ARRAY_OVERHEAD
            added = event_size(event)
        current.append(event)
        size += added
    if current:
        batches.append(current)
    return batches
