"""Loopback fake of the New Relic Event API that enforces its documented contract.

Route: ``POST /v1/accounts/{account_id}/events``. Checks, in order (the synchronous part of the
real API): route (404), method (405), the ``Api-Key`` header is this account's License key
(403), rate limit (429), ``Content-Type: application/json`` (415), a known
``Content-Encoding`` that decodes (400), a non-empty body (400), at most 10^6 bytes before and
after decompression (413). Then 200 ``{"success": true, "uuid": ...}``.

Like New Relic, the fake parses the events only after answering 200: each event that breaks a
rule (not a flat object, no valid ``eventType``, a value that is not a string or number, more
than 255 attributes, a name over 255 or a string over 4096 characters, a ``timestamp`` that is
not an integer within the last 24 hours) lands in ``dropped`` with the reason, the way New Relic
writes an ``NrIntegrationError``; the others are ``messages()``.

Not in the contract, chosen here: a body without ``Content-Encoding: gzip`` (or ``deflate``)
is refused with 400 while ``require_compression`` is set (the default), since this project
always compresses; and a 429 carries ``Retry-After`` unless ``send_retry_after`` is False.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import secrets
import string
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

EVENTS_PATH_RE = re.compile(r"^/v1/accounts/([^/]+)/events/?$")
MAX_PAYLOAD_BYTES = 1_000_000
MAX_ATTRIBUTES = 255
MAX_NAME_CHARS = 255
MAX_VALUE_CHARS = 4096
MAX_AGE_S = 24 * 3600
EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_:]{1,255}$")

LICENSE_KEY_LENGTH = 40
LICENSE_KEY_SUFFIX = "NRAL"

ERRORS = {
    400: "Missing or invalid content length", 403: "Missing or invalid API key",
    404: "Not found", 405: "Method not allowed", 408: "Request timed out",
    413: "Content too large", 415: "Invalid content type", 429: "Too many requests",
    500: "Internal server error", 503: "Service unavailable",
}
"""New Relic's meaning of each submission code, used as the error body."""


@dataclass(frozen=True)
class Dropped:
    """An event New Relic accepted with 200 and then dropped while parsing."""

    reason: str
    event: Any
    request_uuid: str


def license_key() -> str:
    """A random key shaped like a New Relic License key (40 characters ending NRAL)."""
    alphabet = string.ascii_lowercase + string.digits
    body = "".join(secrets.choice(alphabet) for _ in range(LICENSE_KEY_LENGTH - 4))
    return body + LICENSE_KEY_SUFFIX


def error_reply(status: int, headers: dict[str, str] | None = None) -> Reply:
    """New Relic's refusal: ``{"success": false, "error": <meaning>}``."""
    return json_reply(status, {"success": False, "error": ERRORS.get(status, "Error")}, headers)


def event_problem(event: Any, now_s: float) -> str | None:
    """Why New Relic would drop ``event`` while parsing, or None when it keeps it."""
    if not isinstance(event, dict):
        return "event is not a JSON object"
    event_type = event.get("eventType")
    if not isinstance(event_type, str) or not EVENT_TYPE_RE.match(event_type):
        return f"invalid eventType {event_type!r}"
    if len(event) > MAX_ATTRIBUTES:
        return f"{len(event)} attributes (at most {MAX_ATTRIBUTES})"
    for name, value in event.items():
        problem = _attribute_problem(name, value)
        if problem:
            return f"attribute {name[:50]!r}: {problem}"
    return _timestamp_problem(event.get("timestamp"), now_s)


def _attribute_problem(name: str, value: Any) -> str | None:
    if len(name) > MAX_NAME_CHARS:
        return f"name longer than {MAX_NAME_CHARS} characters"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"value of type {type(value).__name__} (only strings and numbers)"
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"value of {len(value)} characters (at most {MAX_VALUE_CHARS})"
    if name == "appId" and not isinstance(value, int):
        return "appId must be an integer"
    return None


def _timestamp_problem(stamp: Any, now_s: float) -> str | None:
    if stamp is None:
        return None
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        return f"timestamp {stamp!r} is not an integer"
    seconds = stamp / 1000 if stamp > 10**11 else stamp
    if now_s - seconds > MAX_AGE_S:
        return f"timestamp {stamp} is more than 24 hours old"
    return None


class FakeNewRelic(ServerBase):
    """The Event API of one New Relic account on 127.0.0.1."""

    def __init__(self, delay_s: float = 0.0, account_id: str = "1234567") -> None:
        super().__init__(delay_s)
        self.account_id = account_id
        self.api_key = license_key()
        self.require_compression = True
        self.send_retry_after = True
        self._dropped: list[Dropped] = []
        self._batches: list[list[dict[str, Any]]] = []

    @property
    def events_url(self) -> str:
        """This account's ``.../v1/accounts/{account_id}/events``."""
        return f"{self.base_url}/v1/accounts/{self.account_id}/events"

    # observations ---------------------------------------------------------------------------

    @property
    def dropped(self) -> list[Dropped]:
        """Events answered 200 and then dropped while parsing, oldest first."""
        with self._lock:
            return list(self._dropped)

    def batches(self) -> list[list[dict[str, Any]]]:
        """The kept events of each 200-answered POST, one list per request."""
        with self._lock:
            return [list(batch) for batch in self._batches]

    def reset(self) -> None:
        """Forget requests, events, drops, scripted failures and rate-limit state."""
        super().reset()
        with self._lock:
            self._dropped.clear()
            self._batches.clear()

    # ServerBase hooks -----------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """The account id an events URL or path names."""
        match = EVENTS_PATH_RE.match(urlsplit(url_or_path).path)
        return match[1] if match else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """New Relic's body for a scripted failure (a 429 with ``Retry-After``)."""
        if status == 429:
            return self._rate_limited(retry_after_s)
        return error_reply(status)

    def handle(self, request: RecordedRequest) -> Reply:
        """Check the request synchronously, answer 200, then parse the events."""
        account = self.webhook_key(request.path)
        if account is None:
            return error_reply(404)
        if request.method != "POST":
            return error_reply(405)
        if account != self.account_id or request.header("Api-Key") != self.api_key:
            return error_reply(403)
        window = self.take_rate_slot(account)
        if window is not None and not window.allowed:
            return self._rate_limited(window.reset_after_s)
        raw, refusal = self._payload(request)
        if refusal is not None:
            return refusal
        request_uuid = str(uuid.uuid4())
        self._parse(account, raw, request_uuid)
        return json_reply(200, {"success": True, "uuid": request_uuid})

    # internals ------------------------------------------------------------------------------

    def _rate_limited(self, retry_after_s: float) -> Reply:
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        return error_reply(429, headers if self.send_retry_after else None)

    def _payload(self, request: RecordedRequest) -> tuple[bytes, Reply | None]:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return b"", error_reply(415)
        if not request.body:
            return b"", error_reply(400)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return b"", error_reply(413)
        try:
            raw = self._decode(request)
        except (OSError, EOFError, zlib.error, ValueError):
            return b"", error_reply(400)
        if len(raw) > MAX_PAYLOAD_BYTES:
            return b"", error_reply(413)
        return raw, None

    def _decode(self, request: RecordedRequest) -> bytes:
        encoding = (request.header("Content-Encoding") or "").strip().lower()
        if encoding == "gzip":
            return gzip.decompress(request.body)
        if encoding == "deflate":
            return zlib.decompress(request.body)
        if encoding in ("", "identity") and not self.require_compression:
            return request.body
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    def _parse(self, account: str, raw: bytes, request_uuid: str) -> None:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._drop("payload is not valid JSON", raw[:200], request_uuid)
            return
        events = body if isinstance(body, list) else [body]
        kept = []
        now_s = time.time()
        for event in events:
            problem = event_problem(event, now_s)
            if problem:
                self._drop(problem, event, request_uuid)
                continue
            kept.append({k: v for k, v in event.items() if k != "accountId"})
            self.accept(account, kept[-1])
        with self._lock:
            self._batches.append(kept)

    def _drop(self, reason: str, event: Any, request_uuid: str) -> None:
        with self._lock:
            self._dropped.append(Dropped(reason, event, request_uuid))
