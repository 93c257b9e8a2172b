"""HEC's side of the wire: URLs, request bodies, and what each reply code means for us.

Codes (the ``code`` in HEC's JSON reply) decide, not just the HTTP status:

    0, 17                 success / healthy
    1-4, 21, 22           the token is missing, wrong or disabled        → AuthError
    9 (and HTTP 429)      server busy                                   → RateLimited
    8, 18-20 (and 5xx)    internal error, HEC unhealthy                  → Unavailable
    6, 12, 13, 15         one event is bad (``invalid-event-number``)    → PartialFailure
    5, 7, 10, 11, 14, 16  the request or its settings are wrong          → Rejected
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config_core.masking import redact
from connectors import http
from connectors.errors import (
    AuthError,
    ConnectorError,
    RateLimited,
    Rejected,
    RetryableError,
    Unavailable,
)
from connectors.settings import http_url

COLLECTOR_PATH = "/services/collector"
EVENT_PATH = COLLECTOR_PATH + "/event"
HEALTH_PATH = COLLECTOR_PATH + "/health"

CODE_TEXT = {
    0: "Success", 1: "Token disabled", 2: "Token is required", 3: "Invalid authorization",
    4: "Invalid token", 5: "No data", 6: "Invalid data format", 7: "Incorrect index",
    8: "Internal server error", 9: "Server is busy", 10: "Data channel is missing",
    11: "Invalid data channel", 12: "Event field is required", 13: "Event field cannot be blank",
    14: "ACK is disabled", 15: "Error in handling indexed fields",
    16: "Query string authorization is not enabled", 17: "HEC is healthy",
    18: "HEC is unhealthy, queues are full", 19: "HEC is unhealthy, ack service unavailable",
    20: "HEC is unhealthy, queues are full, ack service unavailable",
    21: "Invalid token", 22: "Token disabled",
}
"""HEC's reply codes and their documented texts (used when a reply carries no text)."""

AUTH_CODES = frozenset({1, 2, 3, 4, 21, 22})
BUSY_CODES = frozenset({9})
UNAVAILABLE_CODES = frozenset({8, 18, 19, 20})
EVENT_CODES = frozenset({6, 12, 13, 15})
"""Codes about one event: with ``invalid-event-number`` N, events before N were indexed."""


class RetryableAfter(RetryableError):
    """A retryable failure after the first ``accepted`` items of the batch were indexed.

    Only the items from ``accepted`` on need sending again; ``error`` is the failure itself.
    """

    def __init__(self, *, accepted: int, error: RetryableError) -> None:
        super().__init__(str(error), status=error.status, retry_after_s=error.retry_after_s)
        self.accepted = accepted
        self.error = error


@dataclass(frozen=True)
class Answer:
    """HEC's reply to one request."""

    status: int
    code: int | None
    text: str
    invalid_event: int | None
    retry_after_s: float | None

    @property
    def ok(self) -> bool:
        return self.status < 300 and self.code in (None, 0, 17)


def check_hec_url(value: str) -> str | None:
    """An http(s) URL of HEC: host only, ``.../services/collector`` or ``.../event``."""
    problem = http_url(value)
    if problem:
        return problem
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        return "must not carry a query string (the token belongs in hec_token)"
    path = parts.path.rstrip("/")
    if path and not path.endswith((COLLECTOR_PATH, EVENT_PATH)):
        return f"must end with {COLLECTOR_PATH} or {EVENT_PATH}, got path {parts.path!r}"
    return None


def base_url(hec_url: str) -> str:
    """The URL before ``/services/collector`` (``https://splunk.company.com:8088``)."""
    url = hec_url.rstrip("/")
    for suffix in (EVENT_PATH, COLLECTOR_PATH):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def split_requests(lines: list[bytes], limit: int) -> list[tuple[int, list[bytes]]]:
    """Group encoded envelopes, in order, into bodies of at most ``limit`` bytes.

    Each group is ``(index of its first envelope, envelopes)``; joined by newlines.
    """
    groups: list[tuple[int, list[bytes]]] = []
    size = 0
    for index, line in enumerate(lines):
        if groups and size + 1 + len(line) <= limit:
            groups[-1][1].append(line)
            size += 1 + len(line)
        else:
            groups.append((index, [line]))
            size = len(line)
    return groups


def parse_answer(response: Any) -> Answer:
    """Read HEC's JSON reply (``text``, ``code``, ``invalid-event-number``) and waits."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    text = str(body.get("text") or CODE_TEXT.get(code or -1) or response.reason or "")
    invalid = body.get("invalid-event-number")
    return Answer(response.status_code, code, text,
                  invalid if isinstance(invalid, int) and invalid >= 0 else None,
                  http.retry_after(response))


def error_for(answer: Answer, secrets: Iterable[str] = ()) -> ConnectorError:
    """The typed error of a failed reply, carrying HEC's own text (never the token)."""
    code, status = answer.code, answer.status
    label = f"code {code}" if code is not None else f"HTTP {status}"
    text = redact(f"Splunk HEC answered {status} ({label}): {answer.text}", secrets)
    if code in AUTH_CODES:
        return AuthError(text, status=status)
    if code in BUSY_CODES or status == 429:
        return RateLimited(text, status=status, retry_after_s=answer.retry_after_s)
    if code in UNAVAILABLE_CODES or status >= 500:
        return Unavailable(text, status=status, retry_after_s=answer.retry_after_s)
    if code is not None and code in CODE_TEXT:
        return Rejected(text, status=status)
    return http.error_for(status, text, answer.retry_after_s)
