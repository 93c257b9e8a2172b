"""Pure builders for Jira: event and config in, the create-issue body (and search body) out.

Which events make an issue, of which kind:

    config.changed / config.deleted    -> config_change  (a change of integrations.schemas ->
                                                           schema_update)
    config.error / security.violation  -> config_error
    approval.requested                 -> config_change (jira as an approval method: a task
                                                           for the approvers)
    anything else                      -> no issue (the connector skips it)

v3 sends the description as an Atlassian Document (ADF: literal text, so a value cannot mention
anyone); v2 sends a plain-text description whose facts sit in a ``{noformat}`` block, so wiki
markup in a value (``[~user]`` mentions, ``*bold*``) is shown as typed, not rendered.
"""

from __future__ import annotations

import re
from typing import Any

from connectors.chat import readable_time, render_value, truncate

API_VERSIONS = (2, 3)
"""Jira REST API versions this connector speaks."""

DEFAULT_API_VERSION = 3
"""v3 (Jira Cloud); self-hosted Jira Server / Data Center speaks only v2."""

DEFAULT_LABELS = ("apgcfg",)
"""Labels every issue carries besides its fingerprint."""

DEFAULT_ISSUE_TYPES = {"config_change": "Task", "config_error": "Bug", "schema_update": "Story"}
"""Issue type name per kind of event, as the guide configures them."""

FINGERPRINT_PREFIX = "apgcfg-"
"""The label ``apgcfg-<event_id>`` marks the issue of one event (found again by JQL)."""

SUMMARY_LIMIT = 255
"""Jira refuses a summary longer than this."""

LABEL_LIMIT = 255
"""Jira refuses a label longer than this."""

VALUE_LIMIT = 2000
"""Characters of one value shown in the description."""

DESCRIPTION_BUDGET = 30_000
"""Characters of description text; Jira's text fields hold 32,767, some kept for framing."""

SCHEMAS_KEY = "integrations.schemas"
"""The key whose change is a schema update."""

KINDS = {"config.changed": "config_change", "config.deleted": "config_change",
         "config.error": "config_error", "security.violation": "config_error",
         "approval.requested": "config_change"}
"""Event type -> kind of issue (``issue_types`` key)."""

TITLES = {"config.changed": "Configuration changed", "config.deleted": "Configuration deleted",
          "config.error": "Configuration error", "security.violation": "Security violation",
          "approval.requested": "Approval requested"}

INTROS = {
    "config.changed": "A configuration value changed.",
    "config.deleted": "A configuration value was deleted.",
    "config.error": "A configuration change was refused.",
    "security.violation": "A security policy refused a configuration write.",
    "approval.requested": "A configuration change waits for approval.",
}

NOFORMAT = "{noformat}"
ZWSP = "\u200b"
_WHITESPACE_RE = re.compile(r"\s+")


def issue_kind(event: dict[str, Any]) -> str | None:
    """``config_change`` / ``schema_update`` / ``config_error``, or None (no issue)."""
    kind = KINDS.get(str(event.get("type")))
    if kind == "config_change" and is_schema_key(str(event.get("key") or "")):
        return "schema_update"
    return kind


def is_schema_key(key: str) -> bool:
    """True for ``integrations.schemas`` and its fields."""
    return key == SCHEMAS_KEY or key.startswith(SCHEMAS_KEY + ".")


def fingerprint(event: dict[str, Any]) -> str:
    """The dedupe label of ``event``'s issue."""
    return f"{FINGERPRINT_PREFIX}{event['event_id']}"


def issue_type(kind: str, config: dict[str, Any]) -> str:
    """The issue type name for ``kind``: ``issue_types`` over the guide's defaults."""
    return str({**DEFAULT_ISSUE_TYPES, **(config.get("issue_types") or {})}[kind])


def build_payload(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /rest/api/{v}/issue`` body for ``event`` (its kind must not be None)."""
    kind = issue_kind(event)
    if kind is None:
        raise ValueError(f"no Jira issue for event type {event.get('type')!r}")
    version = int(config.get("api_version") or DEFAULT_API_VERSION)
    description: Any = adf_description(event) if version == 3 else plain_description(event)
    return {"fields": {
        "project": {"key": config["default_project"]},
        "issuetype": {"name": issue_type(kind, config)},
        "summary": summary(event),
        "description": description,
        "labels": labels(event, config),
    }}


def summary(event: dict[str, Any]) -> str:
    """``[production] Configuration changed: app.database.host``: one line, ≤ 255 characters."""
    kind = issue_kind(event)
    title = TITLES.get(str(event.get("type")), "Configuration event")
    if kind == "schema_update":
        title = "Configuration schemas updated"
    error_kind = (event.get("metadata") or {}).get("error_kind")
    if event.get("type") == "config.error" and error_kind:
        title += f" ({error_kind})"
    text = f"[{event.get('environment') or '?'}] {title}: {event.get('key') or '?'}"
    return truncate(single_line(text), SUMMARY_LIMIT)


def single_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return _WHITESPACE_RE.sub(" ", text).strip()


def labels(event: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The configured labels, then the fingerprint, without repeats."""
    found: list[str] = []
    for label in [*(config.get("labels") or ()), fingerprint(event)]:
        if label not in found:
            found.append(label)
    return found


def description_rows(event: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) facts of the event, each value cut to ``VALUE_LIMIT``, all within budget."""
    rows = [("Event", str(event.get("type"))), ("Key", render_value(event.get("key"))),
            ("Environment", render_value(event.get("environment"))),
            ("Tenant", render_value(event.get("tenant")))]
    if event.get("type") in ("config.changed", "config.deleted"):
        rows += [("Old value", render_value(event.get("old_value"))),
                 ("New value", render_value(event.get("new_value")))]
    else:
        rows.append(("Value", render_value(event.get("new_value"))))
    for name, value in (event.get("metadata") or {}).items():
        rows.append((str(name).replace("_", " ").capitalize(), render_value(value)))
    rows.append(("Changed by", render_value(event.get("changed_by"))))
    if event.get("reason"):
        rows.append(("Reason", render_value(event["reason"])))
    rows += [("Version", render_value(event.get("version"))), ("Time", readable_time(event)),
             ("Event id", str(event.get("event_id")))]
    return _within_budget([(label, truncate(value, VALUE_LIMIT)) for label, value in rows])


def _within_budget(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept, used = [], 0
    for label, value in rows:
        used += len(label) + len(value) + 3
        if used > DESCRIPTION_BUDGET:
            break
        kept.append((label, value))
    return kept


def intro(event: dict[str, Any]) -> str:
    """The description's first sentence."""
    if issue_kind(event) == "schema_update":
        return "The configuration schemas (integrations.schemas) changed."
    return INTROS.get(str(event.get("type")), "A configuration event occurred.")


def plain_description(event: dict[str, Any]) -> str:
    """The v2 description: a sentence, then the facts verbatim in a ``{noformat}`` block."""
    facts = "\n".join(f"{label}: {value}" for label, value in description_rows(event))
    facts = facts.replace("{noformat", "{" + ZWSP + "noformat")
    return f"{intro(event)}\n\n{NOFORMAT}\n{facts}\n{NOFORMAT}"


def adf_description(event: dict[str, Any]) -> dict[str, Any]:
    """The v3 description: an Atlassian Document, a paragraph and a bullet list of facts."""
    items = [{"type": "listItem", "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": f"{label}: ", "marks": [{"type": "strong"}]},
        {"type": "text", "text": value},
    ]}]} for label, value in description_rows(event)]
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": intro(event)}]},
        {"type": "bulletList", "content": items},
    ]}


def search_body(label: str) -> dict[str, Any]:
    """The JQL search for issues carrying ``label`` (fields named: Jira returns only ids else)."""
    escaped = label.replace("\\", "\\\\").replace('"', '\\"')
    return {"jql": f'labels = "{escaped}"', "fields": ["key", "summary", "labels"],
            "maxResults": 10}
