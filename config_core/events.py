"""The event document: one versioned JSON shape for every connector."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

SCHEMA_VERSION = 1
"""Bumped whenever a field of the event changes meaning."""

CHANGED = "config.changed"
DELETED = "config.deleted"
ERROR = "config.error"
SECURITY_VIOLATION = "security.violation"
SECRET_ROTATED = "security.secret_rotated"
REPLAY = "delivery.replay"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"


class Event(TypedDict, total=False):
    """The event document every connector receives (``schema_version`` 1)."""

    schema_version: int
    event_id: str
    type: str
    tenant: str
    environment: str
    key: str
    old_value: Any
    new_value: Any
    version: int
    changed_by: str | None
    reason: str | None
    timestamp: str
    timestamp_epoch: float
    urgency: str | None
    metadata: dict[str, Any]


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a trailing Z."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Change:
    """What the writer knows of a change before Redis assigns its version."""

    type: str
    tenant: str
    environment: str
    key: str
    new_value: Any
    changed_by: str | None
    reason: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: datetime = field(default_factory=now)
    idempotency_key: str = ""
    """Identifies the write: asked again with the same id, it is applied once (see
    ``state.values``); the service gives every write one."""

    def event_head(self, masked_value_json: str) -> str:
        """The event's JSON without its closing brace; the script appends old_value and version.

        ``masked_value_json`` is the new value, masked and already encoded: it is spliced in,
        not encoded again.
        """
        document = {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "type": self.type,
            "tenant": self.tenant,
            "environment": self.environment,
            "key": self.key,
            "changed_by": self.changed_by,
            "reason": self.reason,
            "timestamp": iso(self.at),
            "timestamp_epoch": round(self.at.timestamp(), 6),
            "urgency": None,
            "metadata": self.metadata,
        }
        return f'{_head(document)},"new_value":{masked_value_json}'

    def history_head(self, *, masked_value_json: str, local_only: bool) -> str:
        """The history entry's JSON without its closing brace; the script appends the version."""
        entry = {
            "op": "delete" if self.type == DELETED else "set",
            "key": self.key,
            "changed_by": self.changed_by,
            "reason": self.reason,
            "timestamp": iso(self.at),
            "event_id": None if local_only else self.event_id,
            "local_only": local_only,
        }
        return f'{_head(entry)},"value":{masked_value_json}'


def _head(document: dict[str, Any]) -> str:
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text[:-1]
