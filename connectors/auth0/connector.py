"""Auth0Connector: the members of the mapped Auth0 roles, each with the role mapped for them."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from connectors import auth
from connectors.auth0.api import OFFSET_PAGING_LIMIT, ManagementApi
from connectors.auth0.mapping import (
    DEFAULT_USER_ATTRIBUTES,
    build_directory,
    check_domain,
    check_role_mappings,
    user_query,
)
from connectors.errors import ConnectorError
from connectors.identity import SYNC_INTERVAL, DirectoryUser, IdentityConnector
from connectors.settings import Setting, http_url, list_of_str

log = logging.getLogger(__name__)

USERS_PER_QUERY = 50
"""User ids per ``GET /api/v2/users?q=user_id:(...)``: one page each, a short URL."""


class Auth0Connector(IdentityConnector):
    """Syncs the users of the Auth0 roles named in ``role_mappings`` (Management API v2)."""

    name = "auth0"
    settings = (
        Setting("domain", required=True, check=check_domain,
                doc="Auth0 tenant domain, e.g. yourcompany.auth0.com."),
        Setting("client_id", required=True,
                doc="Machine-to-machine application allowed read:users and read:roles."),
        Setting("client_secret", required=True, secret=True,
                doc="That application's client secret."),
        Setting("connection",
                doc="Only users with an identity from this connection are synced."),
        Setting("role_mappings", kind=dict, required=True, check=check_role_mappings,
                doc="Auth0 role name -> admin, write or read."),
        SYNC_INTERVAL,
        Setting("user_attributes", kind=list, default=list(DEFAULT_USER_ATTRIBUTES),
                check=list_of_str,
                doc="Profile fields kept with each user; dotted names read nested ones "
                    "(app_metadata.team)."),
        Setting("base_url", check=http_url,
                doc="Management API host; default https://{domain} (tests, custom domains)."),
    )

    @property
    def base_url(self) -> str:
        return str(self.config.get("base_url") or f"https://{self.config['domain']}").rstrip("/")

    def token_request(self) -> auth.TokenRequest:
        """The client-credentials request for a Management API token (JSON body)."""
        return auth.client_credentials(
            f"{self.base_url}/oauth/token", str(self.config["client_id"]),
            str(self.config["client_secret"]), as_json=True,
            audience=f"{self.base_url}/api/v2/")

    def api(self) -> ManagementApi:
        return ManagementApi(self.base_url, self.token_request(), self.secrets())

    def directory(self) -> list[DirectoryUser]:
        """Every member of the mapped roles; any failed page raises (never a partial list)."""
        api = self.api()
        memberships: dict[str, list[str]] = {}
        for role_name, role_id in self.role_ids(api):
            for member in self.role_members(api, role_id):
                memberships.setdefault(str(member["user_id"]), []).append(role_name)
        profiles = self.profiles(api, sorted(memberships))
        return build_directory(profiles, memberships, self.config)

    def role_ids(self, api: ManagementApi) -> list[tuple[str, str]]:
        """(mapped role name, Auth0 role id) pairs; ``name_filter`` also matches other names,
        so only exact names are kept."""
        found: list[tuple[str, str]] = []
        for name in self.config["role_mappings"]:
            ids = [str(role["id"])
                   for page in api.offset_pages("/api/v2/roles", {"name_filter": name}, "roles")
                   for role in page if role.get("name") == name]
            if not ids:
                log.warning("auth0: role %r of role_mappings does not exist; it has no members",
                            name)
            found += [(name, role_id) for role_id in ids]
        return found

    def role_members(self, api: ManagementApi, role_id: str) -> list[dict[str, Any]]:
        """Every member of one role: offset paging up to 1,000, checkpoint paging beyond."""
        path = f"/api/v2/roles/{quote(role_id, safe='')}/users"
        first = api.offset_page(path, {}, "users", 0)
        if first["total"] > OFFSET_PAGING_LIMIT:
            pages = api.checkpoint_pages(path, "users")  # page 0 is read again, as Auth0 asks
        else:
            pages = api.offset_pages(path, {}, "users", first=first)
        return [member for page in pages for member in page if member.get("user_id")]

    def profiles(self, api: ManagementApi, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Full profiles (blocked, identities, metadata) of ``user_ids``, in ``connection``."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(user_ids), USERS_PER_QUERY):
            query = user_query(user_ids[start:start + USERS_PER_QUERY],
                               self.config.get("connection"))
            params = {"q": query, "search_engine": "v3"}
            for page in api.offset_pages("/api/v2/users", params, "users"):
                found.update({str(u["user_id"]): u for u in page if u.get("user_id")})
        return found

    def health_check(self) -> bool:
        """True when a token is granted and the roles endpoint answers."""
        try:
            self.api().get("/api/v2/roles", {"per_page": 1})
        except ConnectorError:
            return False
        return True

