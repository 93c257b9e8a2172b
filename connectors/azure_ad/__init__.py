"""Azure AD (Microsoft Entra ID) via Microsoft Graph: an identity provider read for roles.

``mapping`` holds the pure parts (setting checks, the groups query, Graph user -> DirectoryUser),
``graph`` the token and paged reads through the shared HTTP client, ``connector`` the settings
and ``directory()``: the groups ``group_filter`` picks, then each group's transitive members,
users only, every ``@odata.nextLink`` followed; roles from ``group_mappings``.
"""

from connectors.azure_ad.connector import AzureADConnector
from connectors.azure_ad.graph import Graph, error_text, scope, token_request, token_url
from connectors.azure_ad.mapping import (
    directory_user,
    group_filters,
    groups_query,
    is_user,
    members_params,
    needs_advanced_query,
    odata_quote,
    user_email,
)

__all__ = ["AzureADConnector", "Graph", "directory_user", "error_text", "group_filters",
           "groups_query", "is_user", "members_params", "needs_advanced_query",
           "odata_quote", "scope", "token_request", "token_url", "user_email"]
