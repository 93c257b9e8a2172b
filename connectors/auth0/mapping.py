"""Pure functions: Auth0 users and role memberships in, ``DirectoryUser`` out; setting checks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from config_core.access import RANK, ROLES
from connectors.identity import DirectoryUser, highest_role, merge_by_email

DEFAULT_USER_ATTRIBUTES = ("email", "name")
"""Profile fields kept in the directory unless ``user_attributes`` says otherwise."""

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def check_domain(value: str) -> str | None:
    """A bare host name (``yourcompany.auth0.com``): no scheme, path or port."""
    if _DOMAIN_RE.match(value):
        return None
    return "must be a host name such as yourcompany.auth0.com (no https://, no path)"


def check_role_mappings(value: dict[str, Any]) -> str | None:
    """Auth0 role name -> admin / write / read, at least one entry."""
    if not value:
        return "must map at least one Auth0 role name to admin, write or read"
    for name, role in value.items():
        if not isinstance(name, str) or not name.strip():
            return "has an empty Auth0 role name"
        if role not in RANK:
            return f"[{name!r}] must be one of {list(ROLES)}, got {role!r}"
    return None


def is_in_connection(profile: Mapping[str, Any], connection: str | None) -> bool:
    """True when ``connection`` is unset or one of the user's identities comes from it."""
    if not connection:
        return True
    identities = profile.get("identities") or []
    return any(isinstance(i, dict) and i.get("connection") == connection for i in identities)


def pick_attributes(profile: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The listed profile fields that the user has; ``app_metadata.team`` reads nested ones."""
    picked: dict[str, Any] = {}
    for name in names:
        value: Any = profile
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            picked[name] = value
    return picked


def to_directory_user(profile: Mapping[str, Any], role_names: Iterable[str],
                      config: Mapping[str, Any]) -> DirectoryUser | None:
    """One Auth0 user, member of ``role_names``, as the directory holds them (None: no email).

    A blocked user is inactive and gets no role; otherwise the strongest mapped role wins.
    """
    email = profile.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    mappings: Mapping[str, str] = config.get("role_mappings") or {}
    groups = sorted(set(role_names))
    active = profile.get("blocked") is not True
    role = highest_role([mappings.get(name) for name in groups]) if active else None
    names = config.get("user_attributes")
    attributes = pick_attributes(profile, DEFAULT_USER_ATTRIBUTES if names is None else names)
    return DirectoryUser(email=email.lower(), active=active, role=role, groups=groups,
                         attributes=attributes)


def build_directory(profiles: Mapping[str, Mapping[str, Any]],
                    memberships: Mapping[str, Iterable[str]],
                    config: Mapping[str, Any]) -> list[DirectoryUser]:
    """Every member (user id -> role names) whose profile was found, in ``connection``."""
    users = []
    for user_id, role_names in memberships.items():
        profile = profiles.get(user_id)
        if profile is None or not is_in_connection(profile, config.get("connection")):
            continue
        user = to_directory_user(profile, role_names, config)
        if user is not None:
            users.append(user)
    return merge_by_email(users)


def user_query(user_ids: Iterable[str], connection: str | None) -> str:
    """The Lucene ``q`` (search engine v3) that finds these users, in ``connection`` if set."""
    ids = " OR ".join(_quoted(user_id) for user_id in user_ids)
    query = f"user_id:({ids})"
    if connection:
        query += f" AND identities.connection:{_quoted(connection)}"
    return query


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
