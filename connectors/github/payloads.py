"""Pure builders: what to do for an event, the issue to open, the workflow inputs to send.

Everything here is event and config in, request body out; nothing does I/O.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from connectors.chat import event_time, readable_time, truncate
from connectors.github.config import DEFAULT_WORKFLOW_REF, DEPLOY

ISSUE_EVENTS = ("config.changed", "config.deleted", "config.error")
"""Event types that open an issue when ``auto_create_issues`` is on."""

DISPATCH_EVENTS = ("config.changed",)
"""Event types that dispatch ``workflow_triggers["deploy"]``."""

FINGERPRINT_PREFIX = "apgcfg-"
"""Prefix of the per-event label that finds an issue an earlier attempt opened."""

TITLE_LIMIT, BODY_LIMIT = 256, 65536
"""GitHub's limits on an issue's title and body, in characters."""

VALUE_LIMIT, TEXT_LIMIT = 20_000, 1_000
"""Characters kept of each value shown in an issue body, and of other free text."""

MAX_INPUTS = 25
"""GitHub's maximum number of ``inputs`` of one workflow dispatch (10 on older GHES)."""

INPUT_VALUE_LIMIT = 10_000
"""Characters kept of ``config_value`` in the dispatch inputs."""

DISPATCH_INPUTS = ("event_id", "config_key", "config_value", "version", "changed_by",
                   "environment", "tenant", "reason", "timestamp")
"""The inputs every dispatch sends; the workflow must declare each one."""

RUN_LOOKBACK = timedelta(minutes=5)
"""How far before the event's time the run look-up searches (clock skew)."""

_TITLES = {"config.changed": "Configuration changed", "config.deleted": "Configuration deleted",
           "config.error": "Configuration error"}
_BACKTICKS_RE = re.compile(r"`+")


def fingerprint(event: dict[str, Any]) -> str:
    """The event's label, ``apgcfg-<event_id>`` (39 characters for a 32-hex id)."""
    return f"{FINGERPRINT_PREFIX}{event['event_id']}"


def steps(event: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """What ``config`` asks for this event: ``"issue"``, ``"dispatch"``, both or neither."""
    kind = event.get("type")
    todo = []
    if config.get("auto_create_issues") and kind in ISSUE_EVENTS:
        todo.append("issue")
    if (config.get("workflow_triggers") or {}).get(DEPLOY) and kind in DISPATCH_EVENTS:
        todo.append("dispatch")
    return todo


def skip_reason(event: dict[str, Any], config: dict[str, Any]) -> str:
    """Why ``steps`` is empty, for the ledger."""
    wants_issues = bool(config.get("auto_create_issues"))
    wants_deploy = bool((config.get("workflow_triggers") or {}).get(DEPLOY))
    if not (wants_issues or wants_deploy):
        return "github: auto_create_issues is off and no workflow_triggers['deploy'] is set"
    acted_on = dict.fromkeys([*(ISSUE_EVENTS if wants_issues else ()),
                              *(DISPATCH_EVENTS if wants_deploy else ())])
    return f"github: {event.get('type')} events need nothing (acts on {', '.join(acted_on)})"


# Issues ------------------------------------------------------------------------------------


def issue_payload(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /repos/{o}/{r}/issues`` body: title, body, labels + fingerprint label."""
    labels = [*(config.get("issue_labels") or ()), fingerprint(event)]
    return {"title": issue_title(event), "body": issue_body(event),
            "labels": list(dict.fromkeys(labels))}


def issue_title(event: dict[str, Any]) -> str:
    """``Configuration changed: app.database.host (production)``, at most 256 characters."""
    kind = str(event.get("type") or "event")
    what = _TITLES.get(kind, kind)
    if kind == "config.error" and (event.get("metadata") or {}).get("error_kind") == "schema":
        what = "Schema validation failed"
    title = f"{what}: {event.get('key')} ({event.get('environment')})"
    return truncate(" ".join(title.split()), TITLE_LIMIT)


def issue_body(event: dict[str, Any]) -> str:
    """Markdown describing the event; user text sits in code, so it cannot @mention anyone."""
    parts = [_intro(event), _facts(event), *_value_sections(event), _footer(event)]
    return truncate("\n\n".join(p for p in parts if p), BODY_LIMIT)


def _intro(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "config.error":
        return "A configuration write was **refused**; nothing was changed."
    if kind == "config.deleted":
        return "A configuration key was **deleted**."
    return "A configuration key was **changed**."


def _facts(event: dict[str, Any]) -> str:
    rows = [("Key", code_span(event.get("key"))),
            ("Environment", code_span(event.get("environment"))),
            ("Tenant", code_span(event.get("tenant"))),
            ("Version", code_span(event.get("version"))),
            ("Changed by", code_span(event.get("changed_by"))),
            ("Reason", code_span(truncate(str(event.get("reason") or ""), TEXT_LIMIT))),
            ("Time", readable_time(event)),
            ("Urgency", code_span(event.get("urgency")))]
    return "\n".join(f"- **{name}:** {value}" for name, value in rows)


def _value_sections(event: dict[str, Any]) -> list[str]:
    kind = event.get("type")
    if kind == "config.error":
        meta = event.get("metadata") or {}
        heading = f"Error ({meta.get('error_kind') or 'validation'})"
        sections = [_section(heading, meta.get("error") or "(no detail)")]
        if meta.get("schema_pattern"):
            sections.append(f"Schema pattern: {code_span(meta['schema_pattern'])}")
        return [*sections, _section("Refused value", event.get("new_value"))]
    if kind == "config.deleted":
        return [_section("Last value", event.get("old_value"))]
    return [_section("Old value", event.get("old_value")),
            _section("New value", event.get("new_value"))]


def _section(heading: str, value: Any) -> str:
    language = "text" if isinstance(value, str) else "json"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return f"### {heading}\n{code_block(truncate(text, VALUE_LIMIT), language)}"


def _footer(event: dict[str, Any]) -> str:
    return (f"<sub>Opened by APG Central Configuration · event {code_span(event['event_id'])}"
            f"</sub>\n<!-- {fingerprint(event)} -->")


def code_span(value: Any) -> str:
    """``value`` as inline code on one line, fenced so that no backtick inside can end it."""
    if value is None or value == "":
        return "—"
    text = " ".join(str(value).splitlines()) or " "
    fence = "`" * (_longest_backticks(text) + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def code_block(text: str, language: str = "") -> str:
    """``text`` as a fenced block whose fence is longer than any backtick run inside."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in _BACKTICKS_RE.findall(text)), default=0)


# Workflow dispatch -------------------------------------------------------------------------


def dispatch_payload(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The ``.../dispatches`` body: the ref and the change as string inputs."""
    return {"ref": config.get("workflow_ref") or DEFAULT_WORKFLOW_REF,
            "inputs": dispatch_inputs(event)}


def dispatch_inputs(event: dict[str, Any]) -> dict[str, str]:
    """The change as :data:`DISPATCH_INPUTS`, every value a string (non-strings as JSON)."""
    inputs = {
        "event_id": str(event["event_id"]),
        "config_key": _text(event.get("key")),
        "config_value": truncate(input_value(event.get("new_value")), INPUT_VALUE_LIMIT),
        "version": _text(event.get("version")),
        "changed_by": _text(event.get("changed_by")),
        "environment": _text(event.get("environment")),
        "tenant": _text(event.get("tenant")),
        "reason": _text(event.get("reason")),
        "timestamp": _text(event.get("timestamp")),
    }
    return inputs


def input_value(value: Any) -> str:
    """A string as it is; anything else (numbers, dicts, None) JSON-encoded."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any) -> str:
    return "" if value is None else truncate(str(value), TEXT_LIMIT)


def runs_query(event: dict[str, Any]) -> dict[str, str]:
    """Query of the workflow-runs list that holds a run this event dispatched."""
    query = {"event": "workflow_dispatch", "per_page": "100"}
    moment = event_time(event)
    if moment is not None:
        query["created"] = ">=" + (moment - RUN_LOOKBACK).strftime("%Y-%m-%dT%H:%M:%SZ")
    return query


def run_matches(run: dict[str, Any], event_id: str) -> bool:
    """Whether a listed run carries ``event_id`` in its title (the workflow's ``run-name``)."""
    return any(event_id in str(run.get(field) or "") for field in ("display_title", "name"))
