"""Pure builders: what the GitLab connector does for an event, and the request bodies it sends.

Nothing here does I/O. ``plan`` decides (or raises ``Skipped`` saying why); the other functions
turn an event and the connector's config into GitLab REST v4 bodies.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from connectors.errors import Skipped

ACTED_ON = ("config.changed", "config.deleted")
"""Event types that become commits, merge requests and pipelines."""

OWN_KEYS_PREFIX = "integrations."
"""Keys that configure this service itself: never committed to a repository or deployed."""

TITLE_LIMIT = 255
"""GitLab's merge request title limit (characters)."""

BRANCH_KEY_LIMIT = 120
"""Characters of the key kept in a branch name (the event id suffix keeps it unique)."""

EVENT_ID_CHARS = 12
"""Characters of the event id in a branch name: the per-event fingerprint."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


@dataclass(frozen=True)
class Plan:
    """What to do for one event: a merge request or not, and which pipelines to start."""

    merge_request: bool
    pipelines: tuple[tuple[str, str], ...]


def plan(event: dict[str, Any], config: dict[str, Any]) -> Plan:
    """The work ``event`` asks of this config; ``Skipped`` (with the reason) when none."""
    kind = event.get("type")
    if kind not in ACTED_ON:
        raise Skipped(f"gitlab acts on {' and '.join(ACTED_ON)} only, not {kind}")
    key = str(event.get("key") or "")
    if key.startswith(OWN_KEYS_PREFIX):
        raise Skipped(f"{key} configures this service; it is not committed or deployed")
    triggers = tuple(sorted((config.get("pipeline_triggers") or {}).items()))
    wanted = Plan(bool(config.get("auto_create_mrs")), triggers)
    if not wanted.merge_request and not wanted.pipelines:
        raise Skipped("auto_create_mrs is off and no pipeline_triggers are set")
    return wanted


# names ---------------------------------------------------------------------------------------


def segment(text: str) -> str:
    """``text`` as one safe path / ref component (letters, digits, ``._-``; no ``..``)."""
    cleaned = _DOTS.sub(".", _UNSAFE.sub("-", text)).strip(".-")
    return cleaned or "_"


def file_path(event: dict[str, Any]) -> str:
    """``config/<environment>/<key>.json``: one file per key and environment."""
    return f"config/{segment(str(event.get('environment') or 'default'))}/" \
           f"{segment(str(event.get('key') or 'key'))}.json"


def branch_name(event: dict[str, Any], config: dict[str, Any]) -> str:
    """``<prefix><environment>/<key>-v<version>-<event id>``: deterministic per event."""
    key = segment(str(event.get("key") or "key"))[:BRANCH_KEY_LIMIT].rstrip(".-")
    env = segment(str(event.get("environment") or "default"))
    version = event.get("version") or 0
    fingerprint = str(event.get("event_id") or "")[:EVENT_ID_CHARS]
    return f"{config.get('branch_prefix') or ''}{env}/{key}-v{version}-{fingerprint}"


def check_ref(value: str) -> str | None:
    """A usable git branch name (git's ref-format rules, simplified)."""
    if not value or value.startswith(("-", "/", ".")) or value.endswith(("/", ".", ".lock")):
        return "must be a git branch name (no leading '-', '/' or '.', no trailing '/' or '.')"
    if _BAD_REF.search(value) or "/." in value:
        return "must be a git branch name (no spaces, '..', '~^:?*[\\', '@{' or '//')"
    return None


# commit ----------------------------------------------------------------------------------------


def file_content(event: dict[str, Any]) -> str:
    """The JSON document committed for a key: its value and where that value came from."""
    document = {
        "key": event.get("key"),
        "environment": event.get("environment"),
        "value": event.get("new_value"),
        "version": event.get("version"),
        "changed_by": event.get("changed_by"),
        "reason": event.get("reason"),
        "updated_at": event.get("timestamp"),
        "event_id": event.get("event_id"),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def commit_action(event: dict[str, Any], exists: bool) -> str | None:
    """``create``, ``update`` or ``delete`` for the key's file; None when there is nothing to do."""
    if event.get("type") == "config.deleted":
        return "delete" if exists else None
    return "update" if exists else "create"


def commit_body(event: dict[str, Any], config: dict[str, Any], action: str) -> dict[str, Any]:
    """``POST /projects/:id/repository/commits``: one action, on a new branch off the target."""
    change: dict[str, Any] = {"action": action, "file_path": file_path(event)}
    if action != "delete":
        change["content"] = file_content(event)
    return {
        "branch": branch_name(event, config),
        "start_branch": config["mr_target_branch"],
        "commit_message": commit_message(event, action),
        "actions": [change],
    }


def commit_message(event: dict[str, Any], action: str) -> str:
    """Subject line plus trailers that tie the commit to the change and its event."""
    lines = [f"{_verb(action)} {event.get('key')} in {event.get('environment')} "
             f"(v{event.get('version')})", ""]
    if event.get("changed_by"):
        lines.append(f"Changed-by: {_one_line(event['changed_by'])}")
    if event.get("reason"):
        lines.append(f"Reason: {_one_line(event['reason'])}")
    lines.append(f"APG-Event-Id: {event.get('event_id')}")
    return "\n".join(lines)


def _verb(action: str) -> str:
    return {"create": "Add", "update": "Update", "delete": "Delete"}.get(action, "Change")


# merge request ---------------------------------------------------------------------------------


def merge_request_body(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``POST /projects/:id/merge_requests`` from the event's branch to ``mr_target_branch``.

    The same event always gives the same body, whatever an earlier attempt found.
    """
    verb = "Delete" if event.get("type") == "config.deleted" else "Set"
    title = f"[apgcfg] {verb} {event.get('key')} in {event.get('environment')} " \
            f"(v{event.get('version')})"
    return {
        "source_branch": branch_name(event, config),
        "target_branch": config["mr_target_branch"],
        "title": _truncate(title, TITLE_LIMIT),
        "description": merge_request_description(event),
        "remove_source_branch": True,
    }


def merge_request_description(event: dict[str, Any]) -> str:
    """Markdown; every user-controlled text sits in code, so it can neither @mention anyone nor
    run a quick action (``/merge``) when GitLab renders it."""
    rows = [("Key", event.get("key")), ("Environment", event.get("environment")),
            ("Version", event.get("version")), ("Changed by", event.get("changed_by")),
            ("Reason", event.get("reason")), ("Event", event.get("event_id"))]
    table = ["| | |", "|---|---|"]
    table += [f"| {name} | {code_span(_one_line(value))} |" for name, value in rows
              if value not in (None, "")]
    parts = ["Opened by APG Central Configuration for one configuration change.", "",
             *table, "", "**Old value**", code_block(event.get("old_value")), ""]
    if event.get("type") == "config.deleted":
        parts.append("The key was deleted: this merge request removes its file.")
    else:
        parts += ["**New value**", code_block(event.get("new_value"))]
    return "\n".join(parts)


def code_span(text: str) -> str:
    """``text`` as a Markdown code span, fenced longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    escaped = text.replace("|", "\\|")  # a pipe would end the table cell, even inside code
    return f"{fence} {escaped} {fence}"


def code_block(value: Any) -> str:
    """A JSON rendering of ``value`` in a fenced block (newlines escaped by JSON)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}json\n{text}\n{fence}"


# pipelines -------------------------------------------------------------------------------------


def pipeline_variables(event: dict[str, Any], trigger: str) -> dict[str, str]:
    """The change as CI/CD variables (strings); ``CONFIG_EVENT_ID`` + ``CONFIG_TRIGGER`` are the
    fingerprint used to find the pipeline again."""
    return {
        "CONFIG_KEY": as_text(event.get("key")),
        "CONFIG_VALUE": as_text(event.get("new_value")),
        "CONFIG_OLD_VALUE": as_text(event.get("old_value")),
        "CONFIG_VERSION": as_text(event.get("version")),
        "CONFIG_ENVIRONMENT": as_text(event.get("environment")),
        "CONFIG_TENANT": as_text(event.get("tenant")),
        "CONFIG_EVENT_TYPE": as_text(event.get("type")),
        "CONFIG_EVENT_ID": as_text(event.get("event_id")),
        "CONFIG_CHANGED_BY": as_text(event.get("changed_by")),
        "CONFIG_REASON": as_text(event.get("reason")),
        "CONFIG_TRIGGER": trigger,
    }


def api_pipeline_body(event: dict[str, Any], trigger: str, ref: str) -> dict[str, Any]:
    """``POST /projects/:id/pipeline`` (PRIVATE-TOKEN): ``ref`` and a list of variables."""
    variables = [{"key": k, "value": v, "variable_type": "env_var"}
                 for k, v in pipeline_variables(event, trigger).items()]
    return {"ref": ref, "variables": variables}


def trigger_form(event: dict[str, Any], trigger: str, ref: str,
                 token: str) -> list[tuple[str, str]]:
    """``POST /projects/:id/trigger/pipeline`` form: ``token``, ``ref``, ``variables[KEY]``."""
    form = [("token", token), ("ref", ref)]
    form += [(f"variables[{k}]", v) for k, v in pipeline_variables(event, trigger).items()]
    return form


def as_text(value: Any) -> str:
    """A variable value: strings as they are, None as empty, anything else compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _one_line(value: Any) -> str:
    return " ".join(as_text(value).split())


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
