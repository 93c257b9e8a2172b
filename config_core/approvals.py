"""Approval policy: which keys need approval, by whom, and who may decide a request.

The section is the guide's::

    {"required_approvals": {"*.database.*": {"approvers": [...], "min_approvals": 2,
                                             "timeout": 3600}},
     "approval_methods": ["email", "slack", "jira"]}

Patterns match keys with routing's glob (``*`` spans dots). ``integrations.*`` keys never need
approval: they configure the service itself (approvals included), are guarded by the admin role,
and a pattern such as ``*`` must not lock the approval settings away.
A pure module: no Redis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config_core.errors import ApprovalDenied, ConfigError
from config_core.events import Change, iso
from config_core.routing import matches

APPROVALS_KEY = "integrations.approvals"
"""Where the approval settings are stored."""

MAX_TIMEOUT_S = 30 * 24 * 3600
"""The longest a request may wait for its approvers: 30 days."""

MAX_APPROVERS = 100
"""The most approvers one pattern may list."""

PENDING = "pending"
"""The status of a request still waiting for decisions; every other status is final."""

_SECTION = "integrations.approvals"


@dataclass(frozen=True)
class Rule:
    """The approval a key needs: who may approve, how many must, and for how long."""

    pattern: str
    approvers: tuple[str, ...]
    min_approvals: int
    timeout_s: int
    methods: tuple[str, ...] = ()


def rule_for(key: str, settings: Any) -> Rule | None:
    """The first rule (in the settings' order) whose pattern matches ``key``; None if none."""
    if key.startswith("integrations.") or not isinstance(settings, dict):
        return None
    methods = tuple(settings.get("approval_methods", ()))
    for pattern, entry in settings.get("required_approvals", {}).items():
        if matches(key, pattern):
            return Rule(pattern, tuple(entry["approvers"]), int(entry["min_approvals"]),
                        int(entry["timeout"]), methods)
    return None


def validate_approvals(value: Any) -> None:
    """Refuse a malformed ``integrations.approvals`` value, naming the bad field.

    Fields other than ``required_approvals`` and ``approval_methods`` are kept as given.
    """
    if not isinstance(value, dict):
        raise ConfigError(f"{_SECTION} must be a dict with a 'required_approvals' dict")
    rules = value.get("required_approvals", {})
    if not isinstance(rules, dict):
        raise ConfigError(f"{_SECTION}.required_approvals must be a dict: pattern → rule")
    for pattern, entry in rules.items():
        _validate_rule(f"{_SECTION}.required_approvals.{pattern}", pattern, entry)
    methods = value.get("approval_methods", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods):
        raise ConfigError(f"{_SECTION}.approval_methods must be a list of non-empty strings")


def _validate_rule(where: str, pattern: Any, entry: Any) -> None:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}: a pattern must be a non-empty string")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a dict with approvers, min_approvals and timeout")
    approvers = entry.get("approvers")
    if (not isinstance(approvers, list) or not approvers or len(approvers) > MAX_APPROVERS
            or not all(isinstance(a, str) and a.strip() for a in approvers)):
        raise ConfigError(f"{where}.approvers must be a list of 1 to {MAX_APPROVERS} "
                          "non-empty strings")
    if len({a.lower() for a in approvers}) != len(approvers):
        raise ConfigError(f"{where}.approvers lists someone twice")
    _check_int(f"{where}.min_approvals", entry.get("min_approvals"), 1, len(approvers))
    _check_int(f"{where}.timeout", entry.get("timeout"), 1, MAX_TIMEOUT_S)


def _check_int(where: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer from {low} to {high:,}")


def new_request(change: Change, rule: Rule, base: int, value_json: str, masked_json: str,
                 local_only: bool) -> dict[str, Any]:
    """A pending change request (its id follows from the write's idempotency key)."""
    created = change.at.timestamp()
    return {
        "request_id": hashlib.sha256(change.idempotency_key.encode()).hexdigest()[:32],
        "key": change.key, "value": value_json, "masked": masked_json,
        "requested_by": change.changed_by or "", "reason": change.reason or "",
        "pattern": rule.pattern, "approvers": list(rule.approvers),
        "min_approvals": rule.min_approvals, "methods": list(rule.methods),
        "created_at": repr(created), "expires_at": created + rule.timeout_s,
        "base_version": base, "status": PENDING, "decisions": [],
        "local_only": local_only, "rev": 0, "metadata": change.metadata}


def requested_metadata(request: dict[str, Any]) -> dict[str, Any]:
    """The ``approval.requested`` event's metadata."""
    return {**request["metadata"], "request_id": request["request_id"],
            "approvers": request["approvers"],
            "min_approvals": request["min_approvals"],
            "expires_at": iso(datetime.fromtimestamp(request["expires_at"], UTC)),
            "methods": request["methods"], "pattern": request["pattern"],
            "base_version": request["base_version"], "local_only": request["local_only"]}


def has_decided(request: dict[str, Any], approver: str) -> bool:
    """``ApprovalDenied`` or ``ConfigError`` when ``approver`` may not decide ``request``;
    True when they already did (a decision counts once)."""
    who = approver.strip().lower()
    if request["status"] != PENDING:
        raise ConfigError(f"change request {request['request_id']} is {request['status']}; "
                          "only a pending request takes decisions")
    if who == (request["requested_by"] or "").strip().lower():
        raise ApprovalDenied(f"{approver!r} asked for change request {request['request_id']} "
                             "and may not decide it")
    if who not in {a.strip().lower() for a in request["approvers"]}:
        raise ApprovalDenied(f"{approver!r} is not an approver of change request "
                             f"{request['request_id']} (approvers: {request['approvers']})")
    return any(d["approver"].strip().lower() == who for d in request["decisions"])
