"""Pure functions of the Okta connector: setting checks, group search, user mapping, waits.

Nothing here does I/O: Okta's JSON (and headers) in, directory users (or texts, seconds) out.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from config_core.access import ROLES
from connectors import http
from connectors.identity import DirectoryUser, highest_role

ACTIVE_STATUSES = frozenset({"ACTIVE"})
"""Okta user statuses that may hold a role. Every other status is inactive: STAGED and
PROVISIONED (never activated), RECOVERY, PASSWORD_EXPIRED and LOCKED_OUT (Okta lets the person
sign in only after a reset or unlock), SUSPENDED and DEPROVISIONED (blocked)."""

DEFAULT_USER_ATTRIBUTES = ["email", "firstName", "lastName"]
"""Profile attributes kept with each user unless ``user_attributes`` says otherwise."""

SEARCH_BATCH = 20
"""Group names per ``search`` expression (keeps each URL short)."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")


# setting checks -------------------------------------------------------------------------------

def check_domain(value: str) -> str | None:
    """A bare host name such as ``yourcompany.okta.com``."""
    if _DOMAIN_RE.match(value):
        return None
    return "must be a host name such as yourcompany.okta.com (no https://, no path)"


def check_token(value: str) -> str | None:
    """The API token alone: no ``SSWS`` prefix, no spaces."""
    if not value.strip():
        return "must not be empty"
    if value.upper().startswith("SSWS") or any(ch.isspace() for ch in value):
        return "must be the token alone (without 'SSWS ' and without spaces)"
    return None


def check_mappings(value: dict[Any, Any]) -> str | None:
    """Okta group name → admin / write / read; at least one entry."""
    if not value:
        return "must map at least one Okta group name to admin, write or read"
    for name, role in value.items():
        if not isinstance(name, str) or not name.strip():
            return "keys must be non-empty Okta group names"
        if role not in ROLES:
            return f"[{name!r}] must be one of {list(ROLES)}, got {role!r}"
    return None


# groups ---------------------------------------------------------------------------------------

def quoted(text: str) -> str:
    """``text`` as a double-quoted string of Okta's search language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def group_searches(names: Iterable[str], batch: int = SEARCH_BATCH) -> Iterator[str]:
    """``search`` expressions that find the groups named exactly ``names`` (a few per query)."""
    ordered = sorted(set(names))
    for start in range(0, len(ordered), batch):
        chunk = ordered[start:start + batch]
        yield " or ".join(f"profile.name eq {quoted(name)}" for name in chunk)


def group_name(group: Mapping[str, Any]) -> str | None:
    """The display name of an Okta group object."""
    name = (group.get("profile") or {}).get("name")
    return name if isinstance(name, str) else None


def mapped_groups(groups: Iterable[Mapping[str, Any]], mappings: Mapping[str, str],
                  ) -> list[Mapping[str, Any]]:
    """The groups whose name ``mappings`` names exactly (several may share one name)."""
    return [group for group in groups if group_name(group) in mappings and group.get("id")]


def missing_groups(found: Iterable[Mapping[str, Any]], mappings: Mapping[str, str]) -> list[str]:
    """Mapped names no group was found for."""
    names = {group_name(group) for group in found}
    return sorted(name for name in mappings if name not in names)


# users ----------------------------------------------------------------------------------------

@dataclass
class Membership:
    """One Okta user and the names of the synced groups they were listed in."""

    user: Mapping[str, Any]
    groups: list[str] = field(default_factory=list)


def add_member(members: dict[str, Membership], user: Mapping[str, Any], group: str | None,
               ) -> None:
    """Record ``user`` as a member of ``group`` (None: no group), merging by user id."""
    key = str(user.get("id") or user_email(user) or id(user))
    entry = members.setdefault(key, Membership(user))
    entry.user = user
    if group is not None and group not in entry.groups:
        entry.groups.append(group)


def user_email(user: Mapping[str, Any]) -> str | None:
    """``profile.email``, else ``profile.login`` when it is an address; None without either."""
    profile = user.get("profile") or {}
    for name in ("email", "login"):
        value = profile.get(name)
        if isinstance(value, str) and "@" in value.strip():
            return value.strip()
    return None


def is_active(user: Mapping[str, Any]) -> bool:
    """Whether Okta's ``status`` lets this user hold a role (only ACTIVE does)."""
    return user.get("status") in ACTIVE_STATUSES


def directory_user(user: Mapping[str, Any], groups: list[str], mappings: Mapping[str, str],
                   attributes: Iterable[str]) -> DirectoryUser | None:
    """The directory entry of one Okta user listed in ``groups``; None when it has no email."""
    email = user_email(user)
    if email is None:
        return None
    active = is_active(user)
    role = highest_role([mappings.get(name) for name in groups]) if active else None
    profile = user.get("profile") or {}
    kept = {name: profile[name] for name in attributes if name in profile}
    return DirectoryUser(email=email, active=active, role=role, groups=sorted(groups),
                         attributes=kept)


def directory_users(members: Iterable[Membership], mappings: Mapping[str, str],
                    attributes: Iterable[str]) -> tuple[list[DirectoryUser], int]:
    """Every member as a directory user, and how many were left out for lack of an email."""
    names = list(attributes)
    found = [directory_user(m.user, m.groups, mappings, names) for m in members]
    users = [user for user in found if user is not None]
    return users, len(found) - len(users)


# errors and waits -----------------------------------------------------------------------------

def error_text(body: Any) -> str | None:
    """Okta's ``errorSummary (errorCode)``, with the summaries of its ``errorCauses``."""
    if not isinstance(body, dict) or not body.get("errorSummary"):
        return None
    text = str(body["errorSummary"])
    if body.get("errorCode"):
        text += f" ({body['errorCode']})"
    causes = [str(cause.get("errorSummary")) for cause in body.get("errorCauses") or ()
              if isinstance(cause, dict) and cause.get("errorSummary")]
    return text + (": " + "; ".join(causes) if causes else "")


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until Okta's ``X-Rate-Limit-Reset`` (epoch) has passed, plus one (as the SDK).

    The reset is measured against the response's ``Date`` (Okta's clock) when there is one;
    several reset values (several limits) count the earliest, as the SDK does.
    """
    resets = _numbers(headers.get("X-Rate-Limit-Reset"))
    if not resets:
        return None
    server_now = _http_date(headers.get("Date"))
    return http.bounded_wait(min(resets) - (now if server_now is None else server_now) + 1.0)


def _numbers(text: str | None) -> list[float]:
    found = []
    for part in (text or "").split(","):
        try:
            found.append(float(part))
        except ValueError:
            continue
    return found


def _http_date(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None
