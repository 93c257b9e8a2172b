"""Roles and what each may write: read < write < admin; ``integrations.*`` keys need admin."""

from __future__ import annotations

from typing import Any

from config_core.errors import ConfigError

ROLES = ("read", "write", "admin")
"""Roles, weakest first."""

RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}

ACCESS_KEY = "integrations.access"
"""``{"enforce": true}`` turns access control on for the namespace."""


def required_role(key: str) -> str:
    """The weakest role that may write ``key``."""
    return "admin" if key.startswith("integrations.") else "write"


def may_write(role: str | None, key: str) -> bool:
    """True when ``role`` is strong enough to write ``key``."""
    return RANK.get(role or "", 0) >= RANK[required_role(key)]


def validate_access(value: Any) -> None:
    """Refuse a malformed ``integrations.access`` value."""
    if not isinstance(value, dict) or set(value) - {"enforce"}:
        raise ConfigError('integrations.access must be {"enforce": true|false}')
    if not isinstance(value.get("enforce", False), bool):
        raise ConfigError("integrations.access.enforce must be true or false")


def validate_role(role: Any, where: str) -> None:
    """Refuse a role name that is not read, write or admin."""
    if role not in RANK:
        raise ConfigError(f"{where} must be one of {list(ROLES)}, got {role!r}")
