"""Auth0: the members of the Auth0 roles named in ``role_mappings``, read through the
Management API v2 with a client-credentials token cached until shortly before it expires.

``mapping`` turns Auth0 users into directory users (pure), ``api`` makes the calls and pages
them the Auth0 way, ``connector`` puts the two together.
"""

from connectors.auth0.api import ManagementApi, error_text, rate_limit_wait
from connectors.auth0.connector import Auth0Connector
from connectors.auth0.mapping import (
    build_directory,
    check_domain,
    check_role_mappings,
    is_in_connection,
    merge_by_email,
    pick_attributes,
    to_directory_user,
    user_query,
)

__all__ = ["Auth0Connector", "ManagementApi", "build_directory", "check_domain",
           "check_role_mappings", "error_text", "is_in_connection", "merge_by_email",
           "pick_attributes", "rate_limit_wait", "to_directory_user", "user_query"]
