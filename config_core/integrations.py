"""Validation of ``integrations.*`` keys: connector configs and the system sections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config_core.access import validate_access
from config_core.approvals import validate_approvals
from config_core.errors import ConfigError
from config_core.routing import validate_notifications
from config_core.schemas import validate_schemas
from config_core.sync import validate_multi_env_sync

PREFIX = "integrations."

BATCHING_LIMITS = {"batch_size": 10_000, "batch_timeout": 86_400, "max_retries": 100}
"""The largest value of each ``integrations.batching`` field (events, seconds, retries)."""

MAX_BACKLOG_LIMIT = 100_000_000
"""The largest ``integrations.max_backlog`` (undelivered events the outbox may hold)."""


def _validate_batching(value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError("integrations.batching must be a dict")
    for name, item in value.items():
        if name not in BATCHING_LIMITS:
            raise ConfigError(f"integrations.batching has unknown field {name!r}")
        _check_int(f"integrations.batching.{name}", item, 0, BATCHING_LIMITS[name])


def _validate_max_backlog(value: Any) -> None:
    _check_int("integrations.max_backlog", value, 1, MAX_BACKLOG_LIMIT)


RETRY_WINDOW_LIMIT_S = 7 * 24 * 3600
"""The longest ``integrations.retries`` window: a week (events are kept that long)."""

RETRY_FIELDS = {"window_s": RETRY_WINDOW_LIMIT_S, "max_retries": 1000}
"""Fields of ``integrations.retries`` (and of each connector's entry) and their largest value."""


def _validate_retries(value: Any) -> None:
    """``{"window_s", "max_retries", "connectors": {name: {"window_s", "max_retries"}}}``."""
    if not isinstance(value, dict):
        raise ConfigError("integrations.retries must be a dict")
    _check_retry_fields("integrations.retries", {k: v for k, v in value.items()
                                                 if k != "connectors"})
    per_connector = value.get("connectors", {})
    if not isinstance(per_connector, dict):
        raise ConfigError("integrations.retries.connectors must be a dict of connector names")
    for name, fields in per_connector.items():
        where = f"integrations.retries.connectors.{name}"
        if not isinstance(fields, dict):
            raise ConfigError(f"{where} must be a dict")
        _check_retry_fields(where, fields)


def _check_retry_fields(where: str, fields: dict[str, Any]) -> None:
    for name, item in fields.items():
        if name not in RETRY_FIELDS:
            raise ConfigError(f"{where} has unknown field {name!r}; known: {sorted(RETRY_FIELDS)}"
                              + (" and 'connectors'" if where == "integrations.retries" else ""))
        if item is not None:
            _check_int(f"{where}.{name}", item, 0, RETRY_FIELDS[name])


def _check_int(where: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer from {low} to {high:,}")


HEALTH_FIELDS = {"pause_after": 1_000_000, "unhealthy_after": 1_000_000}
"""Fields of ``integrations.health`` and their largest value (0 for pause_after: never)."""


def _validate_health(value: Any) -> None:
    """``{"pause_after": 10, "unhealthy_after": 3}``: failed deliveries in a row."""
    if not isinstance(value, dict):
        raise ConfigError("integrations.health must be a dict")
    for name, item in value.items():
        if name not in HEALTH_FIELDS:
            raise ConfigError(f"integrations.health has unknown field {name!r}; "
                              f"known: {sorted(HEALTH_FIELDS)}")
        _check_int(f"integrations.health.{name}", item, 0 if name == "pause_after" else 1,
                   HEALTH_FIELDS[name])


SYSTEM_SECTIONS: dict[str, Callable[[Any], None]] = {
    "notifications": validate_notifications,
    "batching": _validate_batching,
    "max_backlog": _validate_max_backlog,
    "schemas": validate_schemas,
    "access": validate_access,
    "retries": _validate_retries,
    "approvals": validate_approvals,
    "multi_env_sync": validate_multi_env_sync,
    "health": _validate_health,
}
"""Sections under ``integrations.`` that configure the service itself, not a connector."""


def split(key: str) -> tuple[str, list[str]] | None:
    """``integrations.discord.webhook_url`` → ("discord", ["webhook_url"]); None if not one."""
    if not key.startswith(PREFIX):
        return None
    name, *path = key[len(PREFIX):].split(".")
    return name, path


def set_path(document: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``document`` with ``value`` at the nested ``path``."""
    updated = dict(document)
    if len(path) == 1:
        updated[path[0]] = value
        return updated
    child = updated.get(path[0], {})
    if not isinstance(child, dict):
        raise ConfigError(f"cannot set {'.'.join(path)}: {path[0]!r} is not a dict")
    updated[path[0]] = set_path(child, path[1:], value)
    return updated


def get_path(document: Any, path: list[str]) -> Any:
    """The value at ``path`` inside nested dicts; ``KeyError`` when absent."""
    for part in path:
        if not isinstance(document, dict) or part not in document:
            raise KeyError(part)
        document = document[part]
    return document
