"""Identity providers (Okta, Auth0, Azure AD): they are read from, never sent events.

An identity connector implements ``directory()``: every user of the configured groups or
roles, each with the role this project gives them. ``sync_data()`` wraps it for the sync
service (``config_core.directory``), which stores a directory all at once or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from config_core.access import RANK
from connectors.base import BaseConnector
from connectors.errors import Skipped
from connectors.settings import Setting

DEFAULT_SYNC_INTERVAL_S = 3600
"""Seconds between two scheduled syncs of one provider (``sync_interval``)."""

SYNC_INTERVAL = Setting("sync_interval", kind=int, default=DEFAULT_SYNC_INTERVAL_S,
                        check=lambda v: None if v >= 60 else "must be at least 60 seconds",
                        doc="Seconds between scheduled syncs (celery beat).")
"""The setting every identity connector declares."""


@dataclass
class DirectoryUser:
    """One user as a provider reports them, with the role mapped from groups or roles."""

    email: str
    active: bool
    role: str | None = None
    groups: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def highest_role(roles: list[str | None]) -> str | None:
    """The strongest of ``roles`` (admin > write > read), or None when there is none."""
    known = [role for role in roles if role in RANK]
    return max(known, key=RANK.__getitem__) if known else None


def merge_by_email(users: Iterable[DirectoryUser]) -> list[DirectoryUser]:
    """One record per e-mail (several accounts may share one): active if any is, the highest
    role among them, every group; the attributes of an active account. Sorted by e-mail."""
    merged: dict[str, DirectoryUser] = {}
    for user in users:
        seen = merged.get(user.email)
        if seen is None:
            merged[user.email] = user
            continue
        merged[user.email] = DirectoryUser(
            email=user.email, active=seen.active or user.active,
            role=highest_role([seen.role, user.role]),
            groups=sorted({*seen.groups, *user.groups}),
            attributes=seen.attributes if seen.active or not user.active else user.attributes)
    return [merged[email] for email in sorted(merged)]


class IdentityConnector(BaseConnector):
    """Base of identity providers: ``directory()`` is the one method to implement."""

    receives_events: ClassVar[bool] = False

    def send_notification(self, event: dict[str, Any]) -> Any:
        raise Skipped("identity providers receive no events")

    def directory(self) -> list[DirectoryUser]:
        """Every user of the synced groups/roles, with ``role`` mapped (None: no access).

        Users who are not active (suspended, deprovisioned, blocked) come back with
        ``active=False`` and ``role=None``. Raise a ``ConnectorError`` if any page fails:
        a partial directory must never replace a complete one.
        """
        raise NotImplementedError

    def sync_data(self) -> dict[str, Any]:
        users = self.directory()
        return {"users": [user.to_dict() for user in users]}
