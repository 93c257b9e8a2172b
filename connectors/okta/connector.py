"""OktaConnector: reads the mapped groups and their members, page by page, with an SSWS token."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from config_core.errors import ConfigError
from connectors import http
from connectors.errors import ConnectorError, Misconfigured, RateLimited, Rejected, Unavailable
from connectors.identity import SYNC_INTERVAL, DirectoryUser, IdentityConnector
from connectors.okta.mapping import (
    DEFAULT_USER_ATTRIBUTES,
    Membership,
    add_member,
    check_domain,
    check_mappings,
    check_token,
    directory_users,
    error_text,
    group_name,
    group_searches,
    mapped_groups,
    missing_groups,
    rate_limit_wait,
)
from connectors.settings import Setting, http_url, list_of_str

log = logging.getLogger(__name__)

VENDOR = "okta"
GROUPS_PATH = "/api/v1/groups"
USERS_PATH = "/api/v1/users"

PAGE_LIMIT = 200
"""``limit`` asked for on every listing: Okta's recommended page size (group members default
to 1000 a page otherwise)."""

MAX_PAGES = 10_000
"""A listing still going after this many pages is refused as a paging loop."""


class OktaConnector(IdentityConnector):
    """Syncs the members of Okta groups named in ``group_mappings``, with the role each gives."""

    name = "okta"
    settings = (
        Setting("domain", required=True, check=check_domain,
                doc="Okta org host, e.g. `yourcompany.okta.com` (no https://)."),
        Setting("api_token", required=True, secret=True, check=check_token,
                doc="API token (Admin → Security → API), sent as `Authorization: SSWS <token>`."),
        Setting("sync_groups", kind=bool, default=True,
                doc="true: sync the members of the mapped groups, with roles. false: sync every "
                    "user (no groups, so no roles)."),
        Setting("group_mappings", kind=dict, check=check_mappings,
                doc="Okta group name (exact) → `admin`, `write` or `read`; required when "
                    "`sync_groups` is true."),
        SYNC_INTERVAL,
        Setting("user_attributes", kind=list, default=DEFAULT_USER_ATTRIBUTES, check=list_of_str,
                doc="Okta profile attributes kept with each user."),
        Setting("base_url", check=http_url,
                doc="API origin instead of `https://{domain}` (proxies, test fakes)."),
    )

    @classmethod
    def validate_config(cls, config: Any, *, partial: bool = False) -> dict[str, Any]:
        """The declared checks, and ``group_mappings`` present whenever ``sync_groups`` is on."""
        checked = super().validate_config(config, partial=partial)
        if not partial and checked.get("sync_groups") and not checked.get("group_mappings"):
            raise ConfigError("integrations.okta.group_mappings is required when sync_groups is "
                              "true (Okta group name -> admin, write or read)")
        return checked

    @property
    def base_url(self) -> str:
        """``base_url``, or ``https://{domain}``, without a trailing slash."""
        return str(self.config.get("base_url") or f"https://{self.config['domain']}").rstrip("/")

    def directory(self) -> list[DirectoryUser]:
        """Every member of the mapped groups (or every user), each with their role."""
        members: dict[str, Membership] = {}
        mappings: Mapping[str, str] = self.config.get("group_mappings") or {}
        if self.config.get("sync_groups", True):
            if not mappings:
                raise Misconfigured("integrations.okta.group_mappings names no group")
            for group in self.groups(mappings):
                for user in self.listing(f"{GROUPS_PATH}/{quote(group['id'], safe='')}/users"):
                    add_member(members, user, group_name(group))
        else:
            for user in self.listing(USERS_PATH):
                add_member(members, user, None)
        users, skipped = directory_users(members.values(), mappings,
                                         self.config.get("user_attributes") or ())
        if skipped:
            log.warning("okta: %d user(s) without an email address left out", skipped)
        return users

    def groups(self, mappings: Mapping[str, str]) -> list[Mapping[str, Any]]:
        """The Okta groups named in ``mappings`` (found with ``search``, paged)."""
        found: list[Mapping[str, Any]] = []
        for expression in group_searches(mappings):
            found.extend(mapped_groups(self.listing(GROUPS_PATH, search=expression), mappings))
        missing = missing_groups(found, mappings)
        if missing:
            log.warning("okta: no group named %s; its members get no role from it", missing)
        return found

    def listing(self, path: str, **params: str) -> Iterator[dict[str, Any]]:
        """Every item of a listing: the first page, then each ``rel="next"`` URL as given."""
        url: str | None = f"{self.base_url}{path}?" + urlencode(
            {**params, "limit": PAGE_LIMIT}, quote_via=quote)
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise Unavailable(f"okta listing of {path} did not end after {MAX_PAGES} pages")
            response = self.get(url)
            yield from page_items(response)
            url = self.next_url(response)

    def next_url(self, response: requests.Response) -> str | None:
        """The ``rel="next"`` link, refused when it leaves the configured origin."""
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        if _origin(link) != _origin(self.base_url):
            raise Rejected(f"okta's next link leaves {_origin(self.base_url)} (points to "
                           f"{_origin(link)}); the token is not sent there")
        return str(link)

    def get(self, url: str) -> requests.Response:
        """One authenticated GET; a typed error when Okta refuses it."""
        secrets = self.secrets()
        response = http.send("GET", url, secrets=secrets, headers=self.headers())
        if response.status_code >= 400:
            raise_for(response, secrets)
        return response

    def headers(self) -> dict[str, str]:
        """Okta's API-token scheme: ``Authorization: SSWS <token>``."""
        return {"Authorization": f"SSWS {self.config['api_token']}", "Accept": "application/json"}

    def health_check(self) -> bool:
        """True when the token may list groups (one group asked for)."""
        try:
            response = http.send("GET", f"{self.base_url}{GROUPS_PATH}?limit=1",
                                 secrets=self.secrets(), headers=self.headers())
        except ConnectorError:
            return False
        return response.status_code == 200


def page_items(response: requests.Response) -> list[dict[str, Any]]:
    """The JSON array of one page; ``Unavailable`` when the body is something else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise Unavailable(f"okta answered {response.status_code} without a JSON array "
                          f"({response.headers.get('Content-Type')})")
    return body


def raise_for(response: requests.Response, secrets: set[str]) -> None:
    """Raise the typed error for a refused call, with Okta's message and rate-limit wait."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = error_text(body)
    if response.status_code == 401:
        message = f"{message or 'unauthorized'}; check integrations.okta.api_token"
    try:
        http.check(response, vendor=VENDOR, message=message, secrets=secrets)
    except RateLimited as exc:
        wait = rate_limit_wait(response.headers, time.time())
        if wait is not None:
            exc.retry_after_s = max(exc.retry_after_s or 0.0, wait)
        raise


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
