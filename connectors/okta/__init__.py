"""Okta: the members of the groups named in ``group_mappings``, each with the role they give.

``connector`` pages through Okta's Management API (``Authorization: SSWS <token>``): the mapped
groups by ``search=profile.name eq "..."``, then ``/api/v1/groups/{id}/users?limit=200`` for
each, following every ``Link: <...>; rel="next"`` URL exactly as given until there is none.
``mapping`` holds the pure parts: setting checks, search expressions, Okta user → directory
user (only ACTIVE users hold a role), error texts and the ``X-Rate-Limit-Reset`` wait.
"""

from connectors.okta.connector import PAGE_LIMIT, OktaConnector, page_items, raise_for
from connectors.okta.mapping import (
    ACTIVE_STATUSES,
    DEFAULT_USER_ATTRIBUTES,
    Membership,
    add_member,
    check_domain,
    check_mappings,
    check_token,
    directory_user,
    directory_users,
    error_text,
    group_searches,
    is_active,
    quoted,
    rate_limit_wait,
    user_email,
)

__all__ = ["ACTIVE_STATUSES", "DEFAULT_USER_ATTRIBUTES", "PAGE_LIMIT", "Membership",
           "OktaConnector", "add_member", "check_domain", "check_mappings", "check_token",
           "directory_user", "directory_users", "error_text", "group_searches", "is_active",
           "page_items", "quoted", "raise_for", "rate_limit_wait", "user_email"]
