"""Loopback fake of Splunk's HTTP Event Collector that enforces its documented contract.

Routes: ``POST /services/collector/event`` (and the ``/services/collector`` alias), ``GET
/services/collector/health`` (and ``/health/1.0``). Order of checks on a POST: route, method,
``Authorization: Splunk <token>`` (401 code 2/3, 403 code 4/1), content length (413),
Content-Encoding (gzip read, others 415), then the body: JSON envelopes concatenated one after
another, each an object with a non-blank ``event`` (codes 12/13), an allowed ``index`` (7), flat
``fields`` (15), a numeric ``time`` and string metadata (6). The first bad envelope stops the
request with its ``invalid-event-number``; the ones before it are indexed, as HEC does.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from tests.fakes.server import (
    DEFAULT_RETRY_AFTER_S,
    RecordedRequest,
    Reply,
    ServerBase,
    json_reply,
)

COLLECTOR_PATHS = ("/services/collector", "/services/collector/event")
HEALTH_PATHS = ("/services/collector/health", "/services/collector/health/1.0")
SPLUNK_CLOUD_MAX_CONTENT_LENGTH = 1_000_000
"""Splunk Cloud's documented request limit (Enterprise defaults to 800 MiB)."""

TEXTS = {
    0: "Success", 1: "Token disabled", 2: "Token is required", 3: "Invalid authorization",
    4: "Invalid token", 5: "No data", 6: "Invalid data format", 7: "Incorrect index",
    8: "Internal server error", 9: "Server is busy", 12: "Event field is required",
    13: "Event field cannot be blank", 15: "Error in handling indexed fields",
    17: "HEC is healthy", 18: "HEC is unhealthy, queues are full", 21: "Invalid token",
    22: "Token disabled",
}
STATUS_OF = {0: 200, 1: 403, 2: 401, 3: 401, 4: 403, 5: 400, 6: 400, 7: 400, 8: 500, 9: 503,
             12: 400, 13: 400, 15: 400, 17: 200, 18: 503, 21: 400, 22: 400}
FAILURE_CODES = {400: 6, 401: 3, 403: 4, 429: 9, 500: 8, 503: 9}
"""The HEC code a scripted ``fail_next(status)`` answers with."""

Check = Callable[[dict[str, Any]], bool]


def hec_reply(code: int, headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    """HEC's JSON reply for ``code`` with its documented HTTP status and text."""
    return json_reply(STATUS_OF[code], {"text": TEXTS[code], "code": code, **extra}, headers)


def split_envelopes(body: bytes | str) -> list[Any]:
    """The JSON values of a HEC body, read one after another (ValueError when malformed)."""
    text = body.decode() if isinstance(body, bytes) else body
    decoder, found, pos = json.JSONDecoder(), [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return found
        value, pos = decoder.raw_decode(text, pos)
        found.append(value)


class FakeSplunk(ServerBase):
    """Splunk HEC with one token, its allowed indexes, and a request size limit."""

    def __init__(self, *, indexes: tuple[str, ...] = ("main", "apg_config"),
                 max_content_length: int = SPLUNK_CLOUD_MAX_CONTENT_LENGTH,
                 delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.token = str(uuid.uuid4()).upper()
        self.indexes = set(indexes)
        self.max_content_length = max_content_length
        self.token_disabled = False
        self.unhealthy = False
        self._refuse: list[Check] = []
        self._later: list[list[Any]] = []

    @property
    def hec_url(self) -> str:
        """The collector URL a user would configure."""
        return f"{self.base_url}/services/collector"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The guide's ``integrations.splunk`` config against this fake."""
        return {"hec_url": self.hec_url, "hec_token": self.token, "index": "apg_config",
                "sourcetype": "apg:configuration", "source": "central-configuration",
                **overrides}

    # test controls --------------------------------------------------------------------------

    def storm(self, requests: int, status: int = 503) -> None:
        """Answer the next ``requests`` event POSTs busy (503 code 9), indexing nothing."""
        self.fail_next(status, times=requests, method="POST")

    def fail_later(self, after: int, status: int, times: int = 1,
                   retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        """Handle the next ``after`` event POSTs normally, then answer ``times`` with ``status``."""
        with self._lock:
            self._later.append([after, times, self.failure_reply(status, retry_after_s)])

    def refuse_events(self, check: Check) -> None:
        """Refuse envelopes for which ``check(envelope)`` is true (400 code 6)."""
        with self._lock:
            self._refuse.append(check)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._refuse.clear()
            self._later.clear()

    # observations ---------------------------------------------------------------------------

    def event_posts(self) -> list[RecordedRequest]:
        """Every POST to the event endpoint, in order (accepted or not)."""
        return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/")
                in COLLECTOR_PATHS]

    def indexed_keys(self) -> list[str]:
        """``event.config_key`` of every indexed event, in order."""
        return [m["event"].get("config_key") for m in self.messages()
                if isinstance(m.get("event"), dict)]

    # ServerBase hooks -----------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        return "hec" if "/services/collector" in url_or_path else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))} if status == 429 else {}
        code = FAILURE_CODES.get(status)
        if code is None:
            return json_reply(status, {"text": _phrase(status), "code": status})
        body = {"text": TEXTS[code], "code": code}
        return json_reply(status, body, headers)

    def handle(self, request: RecordedRequest) -> Reply:
        path = request.path.rstrip("/")
        if path in HEALTH_PATHS and request.method == "GET":
            return self._health(request)
        if path not in COLLECTOR_PATHS:
            return json_reply(404, {"text": "The requested URL was not found on this server.",
                                    "code": 404})
        if request.method != "POST":
            return json_reply(405, {"text": "Method Not Allowed", "code": 405})
        refused = self._scripted_later() or self._auth(request)
        if refused:
            return refused
        if len(request.body) > self.max_content_length:
            text = (f"Content-Length of {len(request.body)} too large "
                    f"(maximum is {self.max_content_length})")
            return json_reply(413, {"text": text, "code": 413})
        encoding = (request.header("Content-Encoding") or "").lower()
        if encoding not in ("", "gzip"):
            return json_reply(415, {"text": "Unsupported Media Type", "code": 415})
        body = gzip.decompress(request.body) if encoding == "gzip" else request.body
        return self._events(body)

    # contract -------------------------------------------------------------------------------

    def _auth(self, request: RecordedRequest) -> Reply | None:
        header = request.header("Authorization")
        if not header:
            return hec_reply(2)
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk" or not token.strip():
            return hec_reply(3)
        if token.strip() != self.token:
            return hec_reply(4)
        return hec_reply(1) if self.token_disabled else None

    def _scripted_later(self) -> Reply | None:
        with self._lock:
            if not self._later:
                return None
            entry = self._later[0]
            if entry[0] > 0:
                entry[0] -= 1
                return None
            entry[1] -= 1
            if entry[1] <= 0:
                self._later.pop(0)
            reply: Reply = entry[2]
            return reply

    def _health(self, request: RecordedRequest) -> Reply:
        header = request.header("Authorization")
        if header is not None and header.partition(" ")[2].strip() != self.token:
            return hec_reply(21)
        if header is not None and self.token_disabled:
            return hec_reply(22)
        return hec_reply(18) if self.unhealthy else hec_reply(17)

    def _events(self, body: bytes) -> Reply:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return hec_reply(6, **{"invalid-event-number": 0})
        if not text.strip():
            return hec_reply(5)
        decoder, pos, number = json.JSONDecoder(), 0, 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                return hec_reply(0)
            try:
                envelope, pos = decoder.raw_decode(text, pos)
            except ValueError:
                return hec_reply(6, **{"invalid-event-number": number})
            code = self._problem(envelope)
            if code is not None:
                return hec_reply(code, **{"invalid-event-number": number})
            self.accept("hec", envelope)
            number += 1

    def _problem(self, envelope: Any) -> int | None:
        """The HEC code refusing ``envelope``, or None when it is indexed."""
        if not isinstance(envelope, dict):
            return 6  # a JSON array (or any non-object) is not an event envelope
        if "event" not in envelope:
            return 12
        event = envelope["event"]
        if event is None or (isinstance(event, str) and not event.strip()):
            return 13
        if "index" in envelope and envelope["index"] not in self.indexes:
            return 7
        if not _flat(envelope.get("fields", {})):
            return 15
        if not _valid_time(envelope.get("time")):
            return 6
        if any(not isinstance(envelope.get(k, ""), str) for k in ("host", "source",
                                                                   "sourcetype")):
            return 6
        with self._lock:
            refuse = list(self._refuse)
        return 6 if any(check(envelope) for check in refuse) else None


def _flat(fields: Any) -> bool:
    if not isinstance(fields, dict):
        return False
    for value in fields.values():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, (dict, list)) for item in items):
            return False
    return True


def _valid_time(value: Any) -> bool:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
