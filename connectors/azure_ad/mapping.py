"""Pure parts of the Azure AD connector: setting checks, the group query, user mapping.

Nothing here does I/O: Graph objects (dicts as Graph returns them) and the config go in,
query parameters and ``DirectoryUser`` records come out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from config_core.access import ROLES
from connectors.identity import DirectoryUser, highest_role
from connectors.settings import list_of_str

USER_TYPE = "#microsoft.graph.user"
"""``@odata.type`` of a user; devices, service principals, contacts and groups are skipped."""

BASE_USER_FIELDS = ("id", "mail", "userPrincipalName", "accountEnabled")
"""User properties always selected: identity, e-mail and status (``accountEnabled`` is not
among Graph's default properties, so it must be asked for)."""

PAGE_SIZE = 999
"""``$top`` of every list call: Graph's largest page for directory collections."""

IN_CLAUSE_LIMIT = 15
"""Names per ``displayName in (...)`` query built from ``group_mappings``. Graph caps the values
of one ``in`` clause; the contract gives no number, so the mapped names are sent in small
batches (one query each) rather than in one long clause."""

RESERVED_TENANTS = frozenset({"common", "organizations", "consumers"})
"""Multi-tenant aliases: client credentials need one specific tenant."""

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DOMAIN_RE = re.compile(r"^(?=.{4,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}$")
_PROPERTY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_LITERAL_RE = re.compile(r"'(?:[^']|'')*'")
_ADVANCED_RE = re.compile(r"\b(?:endswith|ne|not)\b", re.IGNORECASE)


# setting checks -----------------------------------------------------------------------------

def check_tenant(value: str) -> str | None:
    """A directory (tenant) id GUID or a verified domain, not a multi-tenant alias."""
    if value.lower() in RESERVED_TENANTS:
        return f"must name one tenant (a GUID or domain), not {value!r}"
    if _GUID_RE.match(value) or _DOMAIN_RE.match(value):
        return None
    return "must be the directory (tenant) id GUID or a domain such as contoso.onmicrosoft.com"


def check_guid(value: str) -> str | None:
    """An application (client) id: a GUID."""
    return None if _GUID_RE.match(value) else "must be the application (client) id GUID"


def check_api_version(value: str) -> str | None:
    """Graph's two API versions."""
    return None if value in ("v1.0", "beta") else 'must be "v1.0" or "beta"'


def check_filter(value: str) -> str | None:
    """A non-empty OData ``$filter`` with balanced quotes and parentheses."""
    if not value.strip():
        return "must not be empty"
    outside = _LITERAL_RE.sub("''", value)
    if outside.count("'") % 2:
        return "has an unterminated string literal (quote ' as '')"
    depth = 0
    for char in outside:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    return None if depth == 0 else "has unbalanced parentheses"


def check_attributes(value: list[Any]) -> str | None:
    """Graph user property names (they are sent in ``$select``)."""
    problem = list_of_str(value)
    if problem:
        return problem
    bad = [name for name in value if not _PROPERTY_RE.match(name)]
    return f"has names that are not Graph properties: {bad}" if bad else None


def check_mappings(value: dict[Any, Any]) -> str | None:
    """Group display name -> admin / write / read."""
    for name, role in value.items():
        if not isinstance(name, str) or not name.strip():
            return "keys must be non-empty group display names"
        if role not in ROLES:
            return f"[{name!r}] must be one of {list(ROLES)}, got {role!r}"
    return None


# queries ------------------------------------------------------------------------------------

def odata_quote(text: str) -> str:
    """An OData string literal: single quotes, an inner ``'`` doubled."""
    return "'" + text.replace("'", "''") + "'"


def group_filters(config: Mapping[str, Any]) -> list[str]:
    """The ``$filter`` of each groups query: ``group_filter``, else the mapped names."""
    if config.get("group_filter"):
        return [str(config["group_filter"])]
    names = sorted(config.get("group_mappings") or {})
    chunks = [names[i:i + IN_CLAUSE_LIMIT] for i in range(0, len(names), IN_CLAUSE_LIMIT)]
    return ["displayName in (" + ",".join(odata_quote(n) for n in chunk) + ")"
            for chunk in chunks]


def needs_advanced_query(expression: str) -> bool:
    """Whether ``expression`` uses operators Graph serves only as an advanced query
    (``endswith``, ``ne``, ``not``): those need ``ConsistencyLevel: eventual`` and
    ``$count=true``. Words inside string literals do not count."""
    return bool(_ADVANCED_RE.search(_LITERAL_RE.sub("''", expression)))


def groups_query(expression: str) -> tuple[dict[str, str], dict[str, str]]:
    """(params, extra headers) of one groups list call."""
    params = {"$filter": expression, "$select": "id,displayName", "$top": str(PAGE_SIZE)}
    if needs_advanced_query(expression):
        return {**params, "$count": "true"}, {"ConsistencyLevel": "eventual"}
    return params, {}


def members_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Params of one members call: the status and e-mail fields plus ``user_attributes``."""
    fields = dict.fromkeys([*BASE_USER_FIELDS, *(config.get("user_attributes") or ())])
    return {"$select": ",".join(fields), "$top": str(PAGE_SIZE)}


# users --------------------------------------------------------------------------------------

def is_user(obj: Mapping[str, Any]) -> bool:
    """True for a user; False for devices, service principals, contacts and nested groups."""
    return obj.get("@odata.type") == USER_TYPE


def user_email(user: Mapping[str, Any]) -> str | None:
    """``mail``, else the ``userPrincipalName`` when it is an address (not a guest's
    ``#EXT#`` name), lower-cased; None when the user has no usable address."""
    mail = user.get("mail")
    if isinstance(mail, str) and "@" in mail:
        return mail.strip().lower()
    upn = user.get("userPrincipalName")
    if isinstance(upn, str) and "@" in upn and "#EXT#" not in upn.upper():
        return upn.strip().lower()
    return None


def directory_user(user: Mapping[str, Any], groups: Iterable[str],
                   config: Mapping[str, Any]) -> DirectoryUser | None:
    """One Graph user in the synced ``groups`` as a ``DirectoryUser`` (None: no address).

    A disabled account (``accountEnabled`` false, or not reported) is inactive with no role;
    otherwise the role is the highest that ``group_mappings`` gives any of its groups.
    """
    email = user_email(user)
    if email is None:
        return None
    names = sorted(set(groups))
    active = user.get("accountEnabled") is True
    mappings = config.get("group_mappings") or {}
    role = highest_role([mappings.get(name) for name in names]) if active else None
    wanted = config.get("user_attributes") or ()
    return DirectoryUser(email=email, active=active, role=role, groups=names,
                         attributes={name: user.get(name) for name in wanted})
