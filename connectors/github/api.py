"""GitHub REST specifics: the headers every call carries, and GitHub's errors as typed errors.

A 403 is not always a credential problem: GitHub answers a primary rate limit with 403 or 429
and ``x-ratelimit-remaining: 0`` (wait until ``x-ratelimit-reset``), and a secondary rate limit
with 403 or 429 and ``retry-after`` or a message naming it (wait at least a minute).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, NoReturn

import requests

from config_core.masking import redact
from connectors import http
from connectors.chat import truncate
from connectors.errors import RateLimited

API_VERSION = "2022-11-28"
"""REST API version pinned with ``X-GitHub-Api-Version``."""

MEDIA_TYPE = "application/vnd.github+json"
"""The ``Accept`` media type GitHub recommends."""

SECONDARY_WAIT_S = 60.0
"""Least wait after a secondary rate limit that gave no ``retry-after`` (GitHub: one minute)."""

RESET_MARGIN_S = 1.0
"""Added to the wait until ``x-ratelimit-reset`` (whole seconds, and clocks differ)."""

ERROR_TEXT_LIMIT = 500
"""Characters kept of GitHub's error text in a ledger error."""


def api_headers(token: str) -> dict[str, str]:
    """Accept, API version and bearer token, sent on every call."""
    return {"Accept": MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {token}"}


def raise_for(response: requests.Response, *, target: str, secrets: Iterable[str]) -> NoReturn:
    """Raise the typed error of a failed call; ``target`` names what a 404 could not find."""
    status = response.status_code
    message = error_text(json_body(response))
    if status in (403, 429):
        wait_s = rate_limit_wait(response, message)
        if wait_s is not None:
            text = redact(f"github answered {status}: {message or 'rate limit exceeded'}",
                          secrets)
            raise RateLimited(text, status=status, retry_after_s=wait_s)
    if status == 404:
        message = f"{message or 'Not Found'} ({target}, or the token cannot see it)"
    http.check(response, vendor="github", message=message, secrets=secrets)
    raise AssertionError(f"http.check let HTTP {status} pass")  # pragma: no cover


def rate_limit_wait(response: requests.Response, message: str | None,
                    now: float | None = None) -> float | None:
    """Seconds to wait when a 403/429 is a rate limit, or None when it is not one."""
    headers = response.headers
    retry_after = http.parse_retry_after(headers.get("retry-after"))
    if retry_after is not None:
        return retry_after
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(headers.get("x-ratelimit-reset") or "")
        except ValueError:
            return SECONDARY_WAIT_S
        wait_s = http.bounded_wait(reset - (time.time() if now is None else now) + RESET_MARGIN_S)
        return SECONDARY_WAIT_S if wait_s is None else wait_s
    lowered = (message or "").lower()
    if "rate limit" in lowered or "abuse" in lowered or response.status_code == 429:
        return SECONDARY_WAIT_S
    return None


def error_text(body: Any) -> str | None:
    """GitHub's ``message`` and its ``errors`` list, on one line."""
    if not isinstance(body, dict) or not body.get("message"):
        return None
    text = " ".join(str(body["message"]).split())
    details = [_error_detail(item) for item in body.get("errors") or []]
    if details:
        text += ": " + "; ".join(d for d in details if d)
    return truncate(text, ERROR_TEXT_LIMIT)


def _error_detail(item: Any) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return json.dumps(item)
    if item.get("message"):
        return str(item["message"])
    where = ".".join(str(item[k]) for k in ("resource", "field") if item.get(k))
    return f"{where} {item.get('code') or 'invalid'}".strip()


def json_body(response: requests.Response) -> Any:
    """The parsed JSON body, or None."""
    try:
        return response.json()
    except ValueError:
        return None
