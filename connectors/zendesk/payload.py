"""The Zendesk ticket for an event (pure: event and config in, request body out)."""

from __future__ import annotations

import json
from typing import Any

from connectors.chat import readable_time, render_value, truncate
from connectors.errors import Skipped
from connectors.zendesk.templates import render_subject, template_for

SUBJECT_LIMIT = 255
"""Characters of a subject; longer ones are cut (Zendesk's own limit is not documented)."""

VALUE_LIMIT = 4000
"""Characters of each value in the comment; longer values are cut, ending in an ellipsis."""

CUSTOM_VALUE_LIMIT = 255
"""Characters of a custom field value (a Zendesk text field holds one line)."""

CHANGE_TYPES = ("config.changed", "config.deleted")
KIND_BY_TYPE = {"config.error": "config_error", "security.violation": "security_violation"}
EVENT_FIELDS = ("event_id", "type", "tenant", "environment", "key", "version", "changed_by",
                "reason", "urgency", "timestamp")
"""Event fields a ``custom_fields`` entry may name besides the event's metadata."""


def ticket_kind(event: dict[str, Any], config: dict[str, Any]) -> str:
    """Which template tickets ``event``; ``Skipped`` (saying why) when it needs no ticket."""
    event_type = str(event.get("type") or "")
    if event_type in KIND_BY_TYPE:
        return KIND_BY_TYPE[event_type]
    if event_type not in CHANGE_TYPES:
        raise Skipped(f"zendesk opens no tickets for {event_type or 'untyped'} events")
    if event.get("urgency") == "high" or config.get("ticket_all_changes"):
        return "config_change"
    raise Skipped(f"{event_type} of {event.get('key')!r} is not critical "
                  f"(urgency {event.get('urgency') or 'none'}); zendesk tickets high-urgency "
                  "changes only, unless ticket_all_changes is set")


def build_ticket(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /api/v2/tickets.json`` body for ``event`` (``ticket_kind`` must allow it)."""
    kind = ticket_kind(event, config)
    template = template_for(kind, config.get("ticket_templates"))
    ticket: dict[str, Any] = {
        "subject": truncate(render_subject(template["subject"], event), SUBJECT_LIMIT),
        "comment": {"body": comment_body(kind, event), "public": False},
        "priority": template["priority"],
        "type": template["type"],
        "tags": list(template["tags"]),
        "external_id": event["event_id"],
    }
    if config.get("default_assignee"):
        ticket["assignee_email"] = config["default_assignee"]
    fields = custom_field_values(event, config.get("custom_fields") or {})
    if fields:
        ticket["custom_fields"] = fields
    return {"ticket": ticket}


def comment_body(kind: str, event: dict[str, Any]) -> str:
    """The first comment: what happened, then one ``Label: value`` line per detail."""
    lines = [_headline(kind, event), "", *(f"{label}: {value}" for label, value in
                                           _details(kind, event))]
    return "\n".join(lines)


def _headline(kind: str, event: dict[str, Any]) -> str:
    where = f"{event.get('key')} ({event.get('environment')})"
    if kind == "config_error":
        why = "a schema validation error" if _metadata(event).get("error_kind") == "schema" \
            else "a failed validation"
        return f"A change to {where} was refused by {why}."
    if kind == "security_violation":
        return f"A security policy refused a change to {where}."
    if event.get("type") == "config.deleted":
        return f"Configuration {where} was deleted."
    return f"Configuration {where} was changed."


def _details(kind: str, event: dict[str, Any]) -> list[tuple[str, str]]:
    metadata = _metadata(event)
    rows = [("Key", _value(event.get("key")))]
    if kind == "config_change":
        new = "(deleted)" if event.get("type") == "config.deleted" \
            else _value(event.get("new_value"))
        rows.append(("Change", f"{_value(event.get('old_value'))} → {new}"))
        rows.append(("Changed by", _value(event.get("changed_by"))))
    else:
        rows.append(("Refused value", _value(event.get("new_value"))))
        if metadata.get("error"):
            rows.append(("Why", _value(metadata["error"])))
        rows.append(("Attempted by", _value(event.get("changed_by"))))
    rows += [("Environment", _value(event.get("environment"))),
             ("Reason", _value(event.get("reason")))]
    rows += [(_label(name), _value(value)) for name, value in sorted(metadata.items())
             if name not in ("error", "error_kind")]
    rows += [("Time", readable_time(event)), ("Version", _value(event.get("version"))),
             ("Urgency", _value(event.get("urgency"))), ("Tenant", _value(event.get("tenant"))),
             ("Event", _value(event.get("event_id")))]
    return rows


def custom_field_values(event: dict[str, Any], fields: dict[str, int]) -> list[dict[str, Any]]:
    """``[{"id", "value"}]`` for each configured name the event has a value for."""
    metadata = _metadata(event)
    values = []
    for name, field_id in fields.items():
        value = metadata.get(name)
        if value is None and name in EVENT_FIELDS:
            value = event.get(name)
        if value is None:
            continue
        if not isinstance(value, (str, int, float, bool)):
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if isinstance(value, str):
            value = truncate(value, CUSTOM_VALUE_LIMIT)
        values.append({"id": field_id, "value": value})
    return values


def _metadata(event: dict[str, Any]) -> dict[str, Any]:
    metadata = event.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _label(name: str) -> str:
    return str(name).replace("_", " ").capitalize()


def _value(value: Any) -> str:
    return truncate(render_value(value), VALUE_LIMIT)
