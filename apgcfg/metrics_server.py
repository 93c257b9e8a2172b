"""The small ``/metrics`` server of every namespace: loopback by default, behind a bearer token.

``apgcfg run`` starts it beside its children; ``apgcfg metrics`` runs it alone (the operator's
view in a deployment of separate processes, as compose.yaml's ``metrics`` service).
``APGCFG_METRICS_HOST`` (default 127.0.0.1), ``APGCFG_METRICS_PORT`` (default 9808; ``0`` turns
``apgcfg run``'s server off) and ``APGCFG_METRICS_TOKEN`` (``apgcfg run`` generates one, and
prints it, when unset; ``apgcfg metrics`` requires it).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from apgcfg.metrics import render, token_matches
from config_core import settings

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Where the metrics server listens unless ``APGCFG_METRICS_HOST`` says otherwise."""

DEFAULT_PORT = 9808
"""Its port unless ``APGCFG_METRICS_PORT`` says otherwise."""

PATH = "/metrics"

REDIS_TIMEOUT_S = 5.0
"""Connect and read timeout of the client a scrape reads Redis with."""


def redis_client(redis_url: str) -> redis.Redis:
    """The client scrapes read with: replies as text, a scrape never hangs on Redis."""
    return redis.Redis.from_url(settings.client_url(redis_url), decode_responses=True,
                                socket_timeout=REDIS_TIMEOUT_S,
                                socket_connect_timeout=REDIS_TIMEOUT_S)


@dataclass(frozen=True)
class MetricsOptions:
    """Where the server listens and the token a scrape must bring."""

    host: str
    port: int
    token: str
    token_generated: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetricsOptions:
        """Read ``APGCFG_METRICS_*``; a bad port is refused naming the variable."""
        raw_port = env.get("APGCFG_METRICS_PORT", "") or str(DEFAULT_PORT)
        try:
            port = int(raw_port)
        except ValueError:
            raise ValueError(f"APGCFG_METRICS_PORT must be a port number, not {raw_port!r}"
                             ) from None
        if not 0 <= port <= 65535:
            raise ValueError(f"APGCFG_METRICS_PORT must be 0..65535, not {port}")
        token = env.get("APGCFG_METRICS_TOKEN", "")
        return cls(env.get("APGCFG_METRICS_HOST") or DEFAULT_HOST, port,
                   token or secrets.token_urlsafe(24), not token)


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] != PATH:
            self._reply(404, b"not found\n", "text/plain")
        elif not token_matches(self.headers.get("Authorization"), self.server.token):
            self._reply(401, b"a bearer token is required (APGCFG_METRICS_TOKEN)\n",
                        "text/plain", {"WWW-Authenticate": "Bearer"})
        else:
            try:
                self._reply(200, render(self.server.client), CONTENT_TYPE_LATEST)
            except RedisError as exc:
                log.warning("metrics: Redis unreachable: %s", type(exc).__name__)
                self._reply(503, b"Redis is unreachable\n", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str,
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the supervisor's output."""


class MetricsServer(ThreadingHTTPServer):
    """Serves ``/metrics`` from ``client`` in a daemon thread until ``stop``."""

    daemon_threads = True

    def __init__(self, options: MetricsOptions, client: Any) -> None:
        super().__init__((options.host, options.port), _Handler)
        self.token = options.token
        self.client = client
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name="apgcfg-metrics")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
