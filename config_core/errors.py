"""The project's exceptions, one tree for every package.

    ApgConfigError
    ├── ConfigError             a key, value or connector config was refused; nothing was written
    │   ├── AccessDenied        the caller's role may not write that key
    │   ├── ApprovalDenied      the caller may not decide that change request
    │   └── NoApprovalRule      a write that must be approved, on a key no approval rule covers
    └── IntegrationError        the change could not be recorded for delivery; nothing was written

Connector failures (``connectors.errors``) hang from ``ApgConfigError`` too.
"""

from __future__ import annotations


class ApgConfigError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(ApgConfigError, ValueError):
    """A key, value or connector configuration was refused; nothing was written."""


class AccessDenied(ConfigError):
    """The user who asked for a change holds no role that may write that key."""

    def __init__(self, key: str, *, role: str | None, needed: str,
                 user: str | None = None) -> None:
        who = repr(user) if user else "an anonymous caller"
        has = f"has the {role} role" if role else "has no role"
        super().__init__(f"{who} may not write {key!r}: it needs the {needed} role and {who} "
                         f"{has}")
        self.key, self.role, self.needed, self.user = key, role, needed, user


class ApprovalDenied(ConfigError):
    """The caller is not one of the request's approvers, or is the one who asked for it."""


class NoApprovalRule(ConfigError):
    """A write asked to go through approval, but no approval rule covers its key."""


class IntegrationError(ApgConfigError):
    """The change could not be recorded for delivery, so it was not applied."""
