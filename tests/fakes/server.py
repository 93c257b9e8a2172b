"""Shared base of the loopback vendor fakes: a threaded HTTP server that records every request.

A fake binds 127.0.0.1 on an ephemeral port and serves from a daemon thread. Each request is
recorded, then (in this order) answered by a scripted failure (``fail_next``), or by the vendor
subclass's ``handle``; the subclass consults ``take_rate_slot`` for per-webhook rate limits. The
vendor's side effects happen before ``delay_s`` is slept, as with a slow vendor that still posts
the message after the client has timed out.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

LOOPBACK_HOST = "127.0.0.1"
"""Fakes only ever listen on the loopback interface."""

SHUTDOWN_POLL_S = 0.005
"""How often the serving loop checks for ``stop()``; bounds how long stopping takes."""

ANSWER_EXCERPT = 200
"""Bytes of each reply body kept for ``wait_for_messages``' failure message."""

POLL_INTERVAL_S = 0.02
"""How often ``wait_for_messages`` looks again."""

DEFAULT_RETRY_AFTER_S = 1.0
"""Wait advertised by a scripted 429 when the test does not choose one."""

Body = str | bytes | dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One request exactly as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any | None
    received_at: float

    def header(self, name: str) -> str | None:
        """A header's value, looked up case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass(frozen=True)
class Reply:
    """An HTTP response to send."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RateWindow:
    """The state of one webhook's rate-limit window after a request was counted (or refused)."""

    limit: int
    remaining: int
    reset_after_s: float
    allowed: bool


@dataclass
class _ScriptedFailure:
    reply: Reply
    remaining: int
    key: str | None
    method: str | None


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON response."""
    body = json.dumps(payload).encode()
    return Reply(status, body, {"Content-Type": "application/json", **(headers or {})})


def text_reply(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    """A plain-text response served as text/html, as Slack does."""
    return Reply(status, text.encode(), {"Content-Type": "text/html", **(headers or {})})


def _parse_json(body: bytes) -> Any | None:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a ``RecordedRequest`` and writes the fake's ``Reply``."""

    server: _Server

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _dispatch(self) -> None:
        request = self._read()
        reply = self.server.fake.respond(request)
        try:
            self._write(reply)
        except OSError:
            pass  # the client gave up (e.g. its timeout fired during delay_s)

    def _read(self) -> RecordedRequest:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return RecordedRequest(
            method=self.command, path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=dict(self.headers.items()), body=body, json=_parse_json(body),
            received_at=time.time(),
        )

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body and reply.status not in (204, 304):
            self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: ServerBase) -> None:
        super().__init__((LOOPBACK_HOST, 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up."""


class ServerBase:
    """A loopback HTTP fake: start/stop, request log, scripted failures, rate limit, delay."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[RecordedRequest] = []
        self._answers: list[tuple[str, int, bytes]] = []
        self._messages: list[tuple[str, dict[str, Any]]] = []
        self._failures: list[_ScriptedFailure] = []
        self._rate: tuple[int, float] | None = None
        self._hits: dict[str, deque[float]] = {}

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral loopback port and serve from a daemon thread."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self)
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True,
                                            name=f"{type(self).__name__}-server")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the fake must be started)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return f"http://{LOOPBACK_HOST}:{self.port}"

    # test controls --------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, body: Body | None = None,
                  headers: dict[str, str] | None = None, *, webhook_url: str | None = None,
                  method: str | None = None,
                  retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> None:
        """Answer the next ``times`` matching requests with ``status`` (vendor-style by default).

        A request matches when it targets ``webhook_url`` (any webhook if None) with ``method``
        (any method if None). Without ``body`` the vendor's own error for ``status`` is sent,
        and a 429 carries that vendor's ``Retry-After`` headers for ``retry_after_s``.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        reply = self.failure_reply(status, retry_after_s)
        if body is not None:
            reply = _with_body(reply, body)
        reply = Reply(reply.status, reply.body, {**reply.headers, **(headers or {})})
        key = self.key_for(webhook_url) if webhook_url else None
        with self._lock:
            self._failures.append(_ScriptedFailure(reply, times, key, method and method.upper()))

    def clear_failures(self) -> None:
        """Forget the scripted failures not used yet (the vendor recovered)."""
        with self._lock:
            self._failures.clear()

    def rate_limit(self, max_requests: int | None, per_s: float = 1.0) -> None:
        """Allow each webhook ``max_requests`` per sliding ``per_s`` window (None: no limit)."""
        if max_requests is not None and (max_requests < 1 or per_s <= 0):
            raise ValueError(f"need max_requests >= 1 and per_s > 0, got {max_requests}, {per_s}")
        with self._lock:
            self._rate = None if max_requests is None else (max_requests, per_s)
            self._hits.clear()

    def reset(self) -> None:
        """Forget recorded requests, messages, scripted failures and rate-limit state."""
        with self._lock:
            self._requests.clear()
            self._answers.clear()
            self._messages.clear()
            self._failures.clear()
            self._hits.clear()

    # observations ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def statuses(self) -> list[int]:
        """The HTTP status of every answer given so far, oldest first."""
        with self._lock:
            return [status for _, status, _ in self._answers]

    def messages(self, webhook_url: str | None = None) -> list[dict[str, Any]]:
        """Accepted message bodies, oldest first, optionally for one webhook only."""
        key = self.key_for(webhook_url) if webhook_url else None
        with self._lock:
            return [body for k, body in self._messages if key is None or k == key]

    def wait_for_messages(self, n: int, timeout_s: float = 10.0,
                          webhook_url: str | None = None) -> list[dict[str, Any]]:
        """Poll until at least ``n`` messages were accepted; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.messages(webhook_url)
            if len(found) >= n:
                return found
            if time.monotonic() >= deadline:
                with self._lock:
                    answers = list(self._answers)
                raise AssertionError(
                    f"{type(self).__name__}: expected {n} message(s) within {timeout_s}s, "
                    f"got {len(found)}: {found!r}; answers given: {answers!r}"
                )
            time.sleep(POLL_INTERVAL_S)

    # for subclasses -------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        """Answer one request per the vendor's contract."""
        raise NotImplementedError

    def webhook_key(self, url_or_path: str) -> str | None:
        """The identity of the webhook a URL or path names, or None for other paths."""
        raise NotImplementedError

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """The vendor's own response for a scripted failure with ``status``."""
        raise NotImplementedError

    def key_for(self, webhook_url: str) -> str:
        """The webhook key of ``webhook_url``; ValueError when it names no webhook."""
        key = self.webhook_key(webhook_url)
        if key is None:
            raise ValueError(f"not a {type(self).__name__} webhook URL: {webhook_url!r}")
        return key

    def accept(self, key: str, message: dict[str, Any]) -> None:
        """Record a message the vendor accepted for webhook ``key``."""
        with self._lock:
            self._messages.append((key, message))

    def take_rate_slot(self, key: str) -> RateWindow | None:
        """Count a request against ``key``'s window; None when no rate limit is set."""
        now = time.monotonic()
        with self._lock:
            if self._rate is None:
                return None
            limit, per_s = self._rate
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - per_s:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            reset_after_s = max(hits[0] + per_s - now, 0.001) if hits else per_s
            return RateWindow(limit, limit - len(hits), reset_after_s, allowed)

    # dispatch -------------------------------------------------------------------------------

    def respond(self, request: RecordedRequest) -> Reply:
        """Record ``request``, compute its reply, then sleep ``delay_s``."""
        with self._lock:
            self._requests.append(request)
        try:
            reply = self._scripted(request) or self.handle(request)
        except Exception:  # noqa: BLE001 - a bug in the fake must be loud, not a hung socket
            reply = text_reply(500, "fake server error:\n" + traceback.format_exc())
        with self._lock:
            self._answers.append((request.method, reply.status, reply.body[:ANSWER_EXCERPT]))
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)
        return reply

    def _scripted(self, request: RecordedRequest) -> Reply | None:
        key = self.webhook_key(request.path)
        with self._lock:
            for failure in self._failures:
                if failure.key not in (None, key):
                    continue
                if failure.method not in (None, request.method):
                    continue
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.reply
        return None


def _with_body(reply: Reply, body: Body) -> Reply:
    if isinstance(body, dict):
        return json_reply(reply.status, body, _without_content_type(reply.headers))
    raw = body.encode() if isinstance(body, str) else body
    return Reply(reply.status, raw, reply.headers)


def _without_content_type(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "content-type"}
