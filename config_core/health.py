"""A connector's health: its vendor check and its recent deliveries, judged together.

Pure functions: the service and the workers read the record (``state.health``) and run the
vendor check; this module says what the two mean. A connector is

- ``error`` when it cannot be built or its check raised (the error, secrets masked);
- ``unhealthy`` when its check says so, when it is paused, or when its last
  ``unhealthy_after`` deliveries failed, whatever its config looks like;
- ``healthy`` otherwise.

A change of status is an ``integration.unhealthy`` or ``integration.recovered`` event on key
``integrations.<name>``, routed like any other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from config_core.events import Change
from config_core.state import health as records

UNHEALTHY = "integration.unhealthy"
RECOVERED = "integration.recovered"


def thresholds(settings: dict[str, Any] | None) -> tuple[int, int]:
    """``(unhealthy_after, pause_after)`` from ``integrations.health`` (defaults if unset)."""
    settings = settings or {}
    return (int(settings.get("unhealthy_after") or records.DEFAULT_UNHEALTHY_AFTER),
            int(settings.get("pause_after", records.DEFAULT_PAUSE_AFTER)))


def judge(check_ok: bool | None, check_error: str | None, record: dict[str, str],
          settings: dict[str, Any] | None, checked_at: str | None = None) -> dict[str, Any]:
    """The guide's shape (status, last_check, error) plus what the deliveries showed.

    ``check_ok`` is the vendor check's answer, None when it raised (``check_error``).
    """
    unhealthy_after, _ = thresholds(settings)
    streak = records.failures(record)
    paused = records.is_paused(record)
    result: dict[str, Any] = {"last_check": checked_at or now_iso(),
                              "consecutive_failures": streak, "paused": paused}
    if check_ok is None:
        result.update(status="error", error=check_error or "the check failed")
        return result
    error = None
    if paused:
        error = record.get("paused_reason") or "paused"
    elif streak >= unhealthy_after:
        error = f"the last {streak} deliveries failed"
    elif not check_ok:
        error = "the vendor check failed"
    if error and record.get("last_error") and (paused or streak):
        error = f"{error}: {record['last_error']}"
    result["status"] = "unhealthy" if error else "healthy"
    if error:
        result["error"] = error
    for field in ("last_success_at", "last_failure_at"):
        if record.get(field):
            result[field] = _iso(float(record[field]))
    return result


def change_event(ns_tenant: str, ns_environment: str, name: str, previous: str,
                 result: dict[str, Any]) -> Change | None:
    """The event a status change means; None when it is no change worth telling."""
    status = result["status"]
    if status == previous or (not previous and status == "healthy"):
        return None
    kind = RECOVERED if status == "healthy" else UNHEALTHY
    if kind == UNHEALTHY and previous in ("unhealthy", "error"):
        return None  # still not healthy: one event for the fall, one for the recovery
    metadata = {"connector": name, "status": status, "previous_status": previous or None,
                "error": result.get("error"), "paused": result.get("paused", False),
                "consecutive_failures": result.get("consecutive_failures", 0)}
    return Change(kind, ns_tenant, ns_environment, f"integrations.{name}", None,
                  f"health:{name}", result.get("error"), metadata)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
