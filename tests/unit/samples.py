"""Sample data shared by the unit tests."""

from __future__ import annotations

from typing import Any

GUIDE_FIELDS = ["Key", "Old Value", "New Value", "Changed By", "Environment", "Time"]
"""The fields of the guide's example notification, in order."""


def make_event(**overrides: Any) -> dict[str, Any]:
    """The guide's example change as an event document, with ``overrides`` applied."""
    event = {
        "schema_version": 1, "event_id": "0" * 32, "type": "config.changed",
        "tenant": "company", "environment": "production", "key": "app.database.host",
        "old_value": "localhost", "new_value": "prod-db.internal", "version": 3,
        "changed_by": "admin@company.com", "reason": None,
        "timestamp": "2025-01-01T14:30:00.123456Z", "timestamp_epoch": 1735741800.123,
        "urgency": "medium", "metadata": {},
    }
    event.update(overrides)
    return event
