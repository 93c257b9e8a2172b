"""Reading the Auth0 Management API: token, error mapping and Auth0's two ways of paging.

Offset paging (``page``/``per_page``/``include_totals``) serves at most 1,000 results; role
members beyond that are read with checkpoint paging (``take``, then ``from=<next>`` until no
``next`` comes back). Every call goes through ``connectors.http``; one 401 drops the cached
token and the call is made once more with a fresh one (the token was revoked or rotated).
Auth0's buckets refill every second (2 requests/s on small plans), so a 429 asking for a
second or two is waited out inside the sync, within a budget; a longer one fails the sync.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import requests

from connectors import auth, http
from connectors.errors import RateLimited, Unavailable

VENDOR = "auth0"

PER_PAGE = 100
"""Auth0's largest ``per_page`` / ``take``."""

OFFSET_PAGING_LIMIT = 1000
"""Results offset paging can reach; past it Auth0 answers 400."""

INLINE_WAIT_MAX_S = 2.0
"""A 429 asking for at most this long is waited out, and the same page asked again."""

INLINE_WAIT_BUDGET_S = 30.0
"""Total waiting one directory read may do; a 429 beyond it raises ``RateLimited``."""

MIN_WAIT_S = 0.25
"""Least pause before asking again (a reset already in the past still gets this)."""


class ManagementApi:
    """GETs against ``{base_url}/api/v2`` with a cached client-credentials token."""

    def __init__(self, base_url: str, token_request: auth.TokenRequest,
                 secrets: set[str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_request = token_request
        self.secrets = secrets
        self.waited_s = 0.0

    def get(self, path: str, params: dict[str, Any]) -> Any:
        """The JSON body of ``GET {base}{path}``; short rate limits are waited out."""
        while True:
            try:
                return self.get_once(path, params)
            except RateLimited as exc:
                wait = exc.retry_after_s
                if wait is None or wait > INLINE_WAIT_MAX_S \
                        or self.waited_s + wait > INLINE_WAIT_BUDGET_S:
                    raise
                pause = max(wait, MIN_WAIT_S)
                self.waited_s += pause
                time.sleep(pause)

    def get_once(self, path: str, params: dict[str, Any]) -> Any:
        """One ``GET`` (twice after a 401, with a fresh token); a typed error if it fails."""
        for attempt in (1, 2):
            token = auth.bearer_token(self.token_request, vendor=VENDOR, secrets=self.secrets)
            secrets = {*self.secrets, token}
            response = http.send("GET", self.base_url + path, secrets=secrets, params=params,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Accept": "application/json"})
            if response.status_code == 401 and attempt == 1:
                auth.forget(self.token_request)  # revoked or rotated: one fresh token, then fail
                continue
            raise_for(response, secrets)
            return _json(response)
        raise AssertionError("unreachable")

    def offset_pages(self, path: str, params: dict[str, Any], key: str,
                     first: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Each page of ``key`` items until ``total`` is reached (``first``: page 0, if read)."""
        page, seen = 0, 0
        body = first if first is not None else self.offset_page(path, params, key, 0)
        while True:
            items = body[key]
            yield items
            seen += len(items)
            if not items or seen >= body["total"]:
                return
            page += 1
            if page * PER_PAGE >= OFFSET_PAGING_LIMIT:
                raise Unavailable(f"{VENDOR}: {path} holds more than {OFFSET_PAGING_LIMIT} "
                                  "results, which offset paging cannot reach")
            body = self.offset_page(path, params, key, page)

    def offset_page(self, path: str, params: dict[str, Any], key: str,
                    page: int) -> dict[str, Any]:
        """One offset page: ``{"start", "limit", "total", key: [...]}``, shape checked."""
        body = self.get(path, {**params, "page": page, "per_page": PER_PAGE,
                               "include_totals": "true"})
        if not (isinstance(body, dict) and isinstance(body.get(key), list)
                and isinstance(body.get("total"), int)):
            raise Unavailable(f"{VENDOR}: {path} page {page} is not a paged '{key}' list")
        return body

    def checkpoint_pages(self, path: str, key: str) -> Iterator[list[dict[str, Any]]]:
        """Each page of ``key`` items, following ``next`` (passed as ``from``) until it is gone."""
        params: dict[str, Any] = {"take": PER_PAGE}
        while True:
            body = self.get(path, params)
            if not (isinstance(body, dict) and isinstance(body.get(key), list)):
                raise Unavailable(f"{VENDOR}: {path} did not return a '{key}' list")
            yield body[key]
            checkpoint = body.get("next")
            if not checkpoint or not body[key]:
                return
            if checkpoint == params.get("from"):
                raise Unavailable(f"{VENDOR}: {path} returned the same checkpoint twice")
            params = {"take": PER_PAGE, "from": checkpoint}


def raise_for(response: requests.Response, secrets: set[str]) -> None:
    """Raise the typed error of a failed call, with Auth0's message and its rate-limit wait."""
    try:
        http.check(response, vendor=VENDOR, message=error_text(_json(response)),
                   secrets=secrets)
    except RateLimited as exc:
        exc.retry_after_s = rate_limit_wait(response.headers, exc.retry_after_s)
        raise


def rate_limit_wait(headers: Any, retry_after_s: float | None,
                    now: float | None = None) -> float | None:
    """Seconds to wait: the longer of ``Retry-After`` and ``x-ratelimit-reset`` (epoch s)."""
    waits = [retry_after_s] if retry_after_s is not None else []
    reset = headers.get("x-ratelimit-reset")
    try:
        wait_s = http.bounded_wait(float(reset) - (time.time() if now is None else now))
    except (TypeError, ValueError):
        wait_s = None
    if wait_s is not None:
        waits.append(min(float(math.ceil(wait_s)), http.MAX_VENDOR_WAIT_S))
    return max(waits) if waits else None


def error_text(body: Any) -> str | None:
    """Auth0's error text: ``message`` (Management API) or ``error_description``."""
    if not isinstance(body, dict):
        return None
    message = body.get("message") or body.get("error_description")
    error = body.get("errorCode") or body.get("error")
    if message and error:
        return f"{message} ({error})"
    return str(message or error) if message or error else None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
