"""AzureADConnector: the settings, and ``directory()`` (groups, then their members)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from config_core.errors import ConfigError
from connectors.azure_ad.graph import Graph
from connectors.azure_ad.mapping import (
    check_api_version,
    check_attributes,
    check_filter,
    check_guid,
    check_mappings,
    check_tenant,
    directory_user,
    group_filters,
    groups_query,
    is_user,
    members_params,
)
from connectors.errors import ConnectorError, Misconfigured
from connectors.identity import SYNC_INTERVAL, DirectoryUser, IdentityConnector, merge_by_email
from connectors.settings import Setting, http_url

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY_URL = "https://login.microsoftonline.com"
"""Microsoft identity platform (global cloud); the token endpoint is under it."""

DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
"""Microsoft Graph (global cloud)."""

DEFAULT_API_VERSION = "v1.0"
"""Graph API version unless ``graph_api_version`` says ``beta``."""

DEFAULT_USER_ATTRIBUTES = ["id", "displayName", "mail"]
"""User properties kept in the directory unless ``user_attributes`` names others."""

MEMBERS = "transitiveMembers"
"""Members are read transitively: a user of a group nested in a synced group counts as a member
of the synced group (``members`` would give direct members only)."""


class AzureADConnector(IdentityConnector):
    """Users of the Entra ID groups picked by ``group_filter``, with roles from their groups."""

    name = "azure_ad"
    settings = (
        Setting("tenant_id", required=True, check=check_tenant,
                doc="Directory (tenant) id GUID, or a domain such as `contoso.onmicrosoft.com` "
                    "(not `common` / `organizations`)."),
        Setting("client_id", required=True, check=check_guid,
                doc="Application (client) id of the app registration (a GUID)."),
        Setting("client_secret", required=True, secret=True,
                doc="A client secret *value* of that app (not the secret's id)."),
        Setting("graph_api_version", default=DEFAULT_API_VERSION, check=check_api_version,
                doc='`"v1.0"` or `"beta"`.'),
        Setting("sync_groups", kind=bool, default=True,
                doc="true: sync the members of the picked groups, with roles. false: sync "
                    "every user of the tenant (no groups, so no roles)."),
        Setting("group_filter", check=check_filter,
                doc="OData `$filter` picking the synced groups, e.g. "
                    "`\"startswith(displayName,'APG_')\"`; default: the groups named in "
                    "`group_mappings`."),
        Setting("user_attributes", kind=list, default=DEFAULT_USER_ATTRIBUTES,
                check=check_attributes,
                doc="Graph user properties stored with each user (sent in `$select`)."),
        Setting("group_mappings", kind=dict, check=check_mappings,
                doc="Group display name → `admin`, `write` or `read`."),
        Setting("authority_url", default=DEFAULT_AUTHORITY_URL, check=http_url,
                doc="Identity platform base; the token is POSTed to "
                    "`{authority_url}/{tenant_id}/oauth2/v2.0/token` (national clouds, test "
                    "fakes)."),
        Setting("graph_url", default=DEFAULT_GRAPH_URL, check=http_url,
                doc="Microsoft Graph base; also the token scope, `{graph_url}/.default`."),
        SYNC_INTERVAL,
    )

    @classmethod
    def validate_config(cls, config: Any, *, partial: bool = False) -> dict[str, Any]:
        """The declared checks, plus: some groups must be chosen (a filter or mappings)."""
        checked = super().validate_config(config, partial=partial)
        if partial or not checked.get("sync_groups", True):
            return checked
        if not (checked.get("group_filter") or checked.get("group_mappings")):
            raise ConfigError("integrations.azure_ad.group_filter is required when "
                              "group_mappings is empty (which groups should be synced?)")
        return checked

    def directory(self) -> list[DirectoryUser]:
        """Every user of the synced groups (all pages), roles mapped; any failure raises."""
        graph = Graph(self.config, self.secrets())
        found = self._memberships(graph) if self.config.get("sync_groups", True) else {
            str(user["id"]): (user, []) for user in self._all_users(graph)}
        mapped = [directory_user(user, names, self.config) for user, names in found.values()]
        skipped = sum(1 for user in mapped if user is None)
        if skipped:
            log.warning("azure_ad: %d user(s) without a mail or usable userPrincipalName "
                        "were left out", skipped)
        return merge_by_email(user for user in mapped if user is not None)

    def health_check(self) -> bool:
        """True when a token is granted and Graph lists a group with it."""
        try:
            graph = Graph(self.config, self.secrets())
            graph.get(f"{graph.base}/groups", {"$top": "1", "$select": "id"})
        except ConnectorError:
            return False
        return True

    def _memberships(self, graph: Graph) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """User id -> (the user, names of the synced groups they are in)."""
        filters = group_filters(self.config)
        if not filters:
            raise Misconfigured("integrations.azure_ad needs group_filter or group_mappings")
        groups = self._groups(graph, filters)
        unmatched = sorted(set(self.config.get("group_mappings") or {}) - set(groups.values()))
        if unmatched:
            log.warning("azure_ad: mapped group(s) %s were not among the synced groups; "
                        "they give no one a role", unmatched)
        found: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for group_id, group_name in groups.items():
            for user in self._users(graph, group_id):
                found.setdefault(str(user["id"]), (user, []))[1].append(group_name)
        return found

    def _all_users(self, graph: Graph) -> list[dict[str, Any]]:
        """Every user of the tenant (``sync_groups`` false)."""
        users = graph.collection("/users", members_params(self.config))
        return [user for user in users if user.get("id")]

    def _groups(self, graph: Graph, filters: list[str]) -> dict[str, str]:
        """Group id -> display name of every group the filters pick."""
        groups: dict[str, str] = {}
        for expression in filters:
            params, headers = groups_query(expression)
            for group in graph.collection("/groups", params, headers):
                groups[str(group["id"])] = str(group.get("displayName") or group["id"])
        return groups

    def _users(self, graph: Graph, group_id: str) -> list[dict[str, Any]]:
        """The users among a group's (transitive) members; other object types are dropped."""
        path = f"/groups/{quote(group_id, safe='')}/{MEMBERS}"
        members = graph.collection(path, members_params(self.config))
        return [member for member in members if is_user(member) and member.get("id")]
