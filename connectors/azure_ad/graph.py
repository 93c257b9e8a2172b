"""Microsoft Graph over the shared HTTP client: the client-credentials token and paged reads.

The token comes from ``connectors.auth`` (one request per expiry, shared by the process). A
401 from Graph means the cached token is no longer accepted (revoked, or signed for another
audience): it is forgotten and the call is made once more with a fresh one; a second 401 is an
``AuthError``. Pages are followed through ``@odata.nextLink``, sent verbatim, until it is absent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from connectors import auth, http
from connectors.errors import Rejected, Unavailable

VENDOR = "azure_ad"
"""How errors name the vendor."""

MAX_PAGES = 10_000
"""Pages followed for one collection before giving up (a next link that never ends)."""


def token_url(config: Mapping[str, Any]) -> str:
    """``{authority_url}/{tenant_id}/oauth2/v2.0/token``."""
    return f"{str(config['authority_url']).rstrip('/')}/{config['tenant_id']}/oauth2/v2.0/token"


def scope(config: Mapping[str, Any]) -> str:
    """``{graph_url}/.default``: every application permission granted to the app, for the
    Graph being called (``https://graph.microsoft.com/.default`` by default; a national cloud's
    Graph, e.g. ``https://graph.microsoft.us``, has its own)."""
    return f"{str(config['graph_url']).rstrip('/')}/.default"


def token_request(config: Mapping[str, Any]) -> auth.TokenRequest:
    """The form-encoded client-credentials request for Graph."""
    return auth.client_credentials(token_url(config), str(config["client_id"]),
                                   str(config["client_secret"]), scope=scope(config))


def error_text(response: requests.Response) -> str | None:
    """Graph's ``{"error": {"code", "message"}}`` as ``code: message``, or None."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    parts = [error.get("code"), error.get("message")]
    return ": ".join(str(part) for part in parts if part) or None


class Graph:
    """Reads from one tenant's Graph with one app's credentials."""

    def __init__(self, config: Mapping[str, Any], secrets: set[str]) -> None:
        self.root = str(config["graph_url"]).rstrip("/")
        self.base = f"{self.root}/{config['graph_api_version']}"
        self.token = token_request(config)
        self.secrets = secrets

    def collection(self, path: str, params: Mapping[str, str],
                   headers: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a collection, page after page; any failed page raises."""
        url: str | None = f"{self.base}{path}"
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        while url is not None:
            page = self.get(url, query, headers)
            yield from _items(page, url)
            url, query = self._next_link(page, seen), None

    def get(self, url: str, params: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One GET as JSON; on a 401 the token is renewed once and the call repeated."""
        response = self._send(url, params, headers)
        if response.status_code == 401:
            auth.forget(self.token)
            response = self._send(url, params, headers)
        http.check(response, vendor=VENDOR, message=error_text(response), secrets=self.secrets)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Unavailable(f"{VENDOR} answered {response.status_code} without a JSON object",
                              status=response.status_code)
        return body

    def _send(self, url: str, params: Mapping[str, str] | None,
              headers: Mapping[str, str] | None) -> requests.Response:
        bearer = auth.bearer_token(self.token, vendor=VENDOR, secrets=self.secrets)
        sent = {"Authorization": f"Bearer {bearer}", "Accept": "application/json",
                **(headers or {})}
        return http.send("GET", url, secrets={*self.secrets, bearer}, params=params,
                         headers=sent)

    def _next_link(self, page: dict[str, Any], seen: set[str]) -> str | None:
        link = page.get("@odata.nextLink")
        if link is None:
            return None
        if not isinstance(link, str) or not _same_origin(link, self.root):
            raise Rejected(f"{VENDOR}: @odata.nextLink does not point at {self.root}; "
                           "refusing to send the token elsewhere")
        if link in seen or len(seen) >= MAX_PAGES:
            raise Unavailable(f"{VENDOR}: paging did not end (a next link repeated, or more "
                              f"than {MAX_PAGES} pages)")
        seen.add(link)
        return link


def _items(page: dict[str, Any], url: str) -> list[dict[str, Any]]:
    value = page.get("value")
    if not isinstance(value, list):
        raise Unavailable(f"{VENDOR}: a page of {urlsplit(url).path} has no 'value' list")
    return [item for item in value if isinstance(item, dict)]


def _same_origin(link: str, root: str) -> bool:
    a, b = urlsplit(link), urlsplit(root)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())
