"""Zendesk ticket templates and the validators of the connector's settings (pure).

A template is ``{"subject", "priority", "type", "tags"}``; whatever a configured template leaves
out comes from the built-in one of the same name, so ``{"priority": "urgent"}`` alone is valid.
"""

from __future__ import annotations

import re
import string
from typing import Any

PRIORITIES = ("urgent", "high", "normal", "low")
"""Zendesk's ticket priorities."""

TICKET_TYPES = ("problem", "incident", "question", "task")
"""Zendesk's ticket types."""

PLACEHOLDERS = ("config_key", "environment", "tenant", "changed_by", "event_type")
"""What a template's subject may contain, e.g. ``"Configuration Change: {config_key}"``."""

TEMPLATE_FIELDS = ("subject", "priority", "type", "tags")

DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    "config_change": {"subject": "Configuration Change: {config_key}", "priority": "normal",
                      "type": "incident", "tags": ["configuration", "automated"]},
    "config_error": {"subject": "Configuration Error: {config_key}", "priority": "high",
                     "type": "problem", "tags": ["configuration", "error", "urgent"]},
    "security_violation": {"subject": "Security Policy Violation: {config_key}",
                           "priority": "high", "type": "incident",
                           "tags": ["configuration", "security", "automated"]},
}
"""The guide's two templates, plus one for security violations; configured ones override."""

_SUBDOMAIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_EMAIL_RE = re.compile(r"^[^@\s/:]+@[^@\s/:]+\.[^@\s/:]+$")


def check_subdomain(value: str) -> str | None:
    """The account's subdomain alone: ``yourcompany`` for ``yourcompany.zendesk.com``."""
    if _SUBDOMAIN_RE.match(value):
        return None
    return (f"must be the Zendesk subdomain alone (yourcompany for yourcompany.zendesk.com), "
            f"got {value!r}; use base_url for a full URL")


def check_email(value: str) -> str | None:
    """An email address such as ``admin@yourcompany.com``."""
    return None if _EMAIL_RE.match(value) else f"must be an email address, got {value!r}"


def check_custom_fields(value: dict[str, Any]) -> str | None:
    """Event metadata name → Zendesk custom field id (a positive integer)."""
    for name, field_id in value.items():
        if not name or isinstance(field_id, bool) or not isinstance(field_id, int) \
                or field_id <= 0:
            return (f"has {name!r}: {field_id!r}; each value must be a Zendesk custom field id "
                    "(a positive integer)")
    return None


def check_templates(value: dict[str, Any]) -> str | None:
    """Known template names, each a dict of known fields with values Zendesk accepts."""
    for name, template in value.items():
        if name not in DEFAULT_TEMPLATES:
            return f"has unknown template {name!r}; known: {sorted(DEFAULT_TEMPLATES)}"
        if not isinstance(template, dict):
            return f"{name} must be a dict with {', '.join(TEMPLATE_FIELDS)}"
        for field, field_value in template.items():
            problem = _field_problem(field, field_value)
            if problem:
                return f"{name}.{field} {problem}"
    return None


def _field_problem(field: str, value: Any) -> str | None:
    if field not in TEMPLATE_FIELDS:
        return f"is not a template field; known: {', '.join(TEMPLATE_FIELDS)}"
    if field == "tags":
        return _tags_problem(value)
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if field == "priority" and value not in PRIORITIES:
        return f"must be one of {', '.join(PRIORITIES)} (Zendesk's priorities), got {value!r}"
    if field == "type" and value not in TICKET_TYPES:
        return f"must be one of {', '.join(TICKET_TYPES)} (Zendesk's types), got {value!r}"
    return _subject_problem(value) if field == "subject" else None


def _tags_problem(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        return "must be a list of non-empty strings"
    if any(char.isspace() for tag in value for char in tag):
        return "must not contain spaces (Zendesk splits a tag at each space)"
    return None


def _subject_problem(subject: str) -> str | None:
    try:
        parts = list(string.Formatter().parse(subject))
    except ValueError as exc:
        return f"is not a valid template ({exc}); write {{{{ and }}}} for literal braces"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            return (f"has placeholder {{{name}}}; allowed: "
                    + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    return None


def template_for(kind: str, configured: dict[str, Any] | None) -> dict[str, Any]:
    """The template of ``kind``: the configured fields over the built-in ones."""
    return {**DEFAULT_TEMPLATES[kind], **((configured or {}).get(kind) or {})}


def render_subject(subject: str, event: dict[str, Any]) -> str:
    """``subject`` with its placeholders filled from ``event`` (validated when stored)."""
    values = {"config_key": event.get("key") or "", "environment": event.get("environment") or "",
              "tenant": event.get("tenant") or "", "changed_by": event.get("changed_by") or "",
              "event_type": event.get("type") or ""}
    return subject.format_map({k: str(v) for k, v in values.items()})
