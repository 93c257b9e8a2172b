"""``apgcfg diff`` and ``apgcfg rollback``: versions of a key from its history.

``diff KEY --from V1 [--to V2]`` compares two versions of one key (``--to`` defaults to the
current one); with ``--other-environment`` and/or ``--other-redis-url`` it compares the key's
current value here with its current value there. Values are shown as history keeps them:
secrets masked. ``rollback KEY --to V`` is a normal ``set_config`` of version V's value, so it
has its own version, event and history entry, and is delivered like any change.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from apgcfg.exit_codes import NotFound
from apgcfg.render import View, to_json
from config_core.errors import ConfigError
from config_core.masking import MASK
from config_core.service import ConfigService
from config_core.settings import HISTORY_MAX

MISSING = object()


async def version_of(service: ConfigService, key: str, version: int | None) -> dict[str, Any]:
    """History entry of ``key`` at ``version`` (None: the newest); ``NotFound`` when absent."""
    entries = await service.history(key, limit=HISTORY_MAX)
    if not entries:
        raise NotFound(f"{key} has no history in {service.namespace.name}")
    if version is None:
        return entries[0]
    for entry in entries:
        if entry["version"] == version:
            return entry
    known = f"{entries[-1]['version']}..{entries[0]['version']}"
    raise NotFound(f"{key} has no version {version} in its history (kept: {known})")


async def current(service: ConfigService, key: str) -> dict[str, Any]:
    """The current value of ``key`` as a side of a diff (masked), ``NotFound`` when unset."""
    try:
        entry = await service.get_entry(key)
    except KeyError:
        raise NotFound(f"{key} is not set in {service.namespace.name}") from None
    return {"version": entry["version"], "value": entry["value"]}


def compare(key: str, left: dict[str, Any], right: dict[str, Any],
            labels: tuple[str, str]) -> View:
    """The diff document and its unified-diff text."""
    changes = list(changes_between(left["value"], right["value"]))
    data = {"key": key, "from": {"label": labels[0], **_side(left)},
            "to": {"label": labels[1], **_side(right)},
            "same": not changes, "changes": changes}
    lines = difflib.unified_diff(to_json(left["value"]).splitlines(),
                                 to_json(right["value"]).splitlines(),
                                 fromfile=f"{key} {labels[0]}", tofile=f"{key} {labels[1]}",
                                 lineterm="")
    text = "\n".join(lines) or f"{key}: {labels[0]} and {labels[1]} are the same"
    return View(data, text)


def _side(entry: dict[str, Any]) -> dict[str, Any]:
    keep = ("version", "value", "changed_by", "reason", "timestamp", "event_id")
    return {name: entry[name] for name in keep if name in entry}


def changes_between(old: Any, new: Any, path: str = "") -> Any:
    """``{"path", "change": added|removed|changed, "from", "to"}`` for each difference; dicts
    are compared field by field (``path`` ``a.b``), anything else as a whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(set(old) | set(new), key=str):
            where = f"{path}.{name}" if path else str(name)
            if name not in old:
                yield {"path": where, "change": "added", "from": None, "to": new[name]}
            elif name not in new:
                yield {"path": where, "change": "removed", "from": old[name], "to": None}
            else:
                yield from changes_between(old[name], new[name], where)
    elif old != new or type(old) is not type(new):
        yield {"path": path, "change": "changed", "from": old, "to": new}


async def rollback(service: ConfigService, key: str, version: int, changed_by: str | None,
                   reason: str | None) -> dict[str, Any]:
    """Set ``key`` back to the value it had at ``version`` (a normal, evented change)."""
    entry = await version_of(service, key, version)
    if entry.get("op") == "delete" or "value" not in entry:
        raise ConfigError(f"{key} version {version} is a deletion; nothing to roll back to")
    if _holds_mask(entry["value"]):
        raise ConfigError(f"{key} version {version} holds secrets, which history keeps masked; "
                          "set the secret again instead (apgcfg set or rotate_secret)")
    result = await service.set_config(
        key, entry["value"], changed_by=changed_by,
        reason=reason or f"rollback of {key} to version {version}")
    return {"key": key, "rolled_back_to": version, "status": result.status,
            "version": result.version, "event_id": result.event_id,
            "request_id": result.request_id}


def _holds_mask(value: Any) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    return MASK in text
