"""The one HTTP client every connector uses, and the one response-to-error mapping.

One ``requests.Session`` per process (built lazily, so after a prefork fork), a default
``(connect, read)`` timeout on every call, fast retries of failed connects only (a POST whose
outcome is unknown is never re-sent here), and ``Retry-After`` left to the Celery task.

The standard proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)
and ``REQUESTS_CA_BUNDLE`` are honoured with requests' own rules, but read once per vendor
origin instead of on every call (scanning the environment cost a quarter of a POST to a
webhook); ``reset()`` forgets what was read. ``~/.netrc`` is never consulted: credentials come
from the configuration.

Calls reach public addresses only, unless ``APGCFG_ALLOWED_NETWORKS`` allows an internal one
(``connectors.egress``; checked on the resolved address by ``connectors.transport``), and
redirects are never followed: a 3xx is a ``Rejected`` error, so a vendor (or whoever answers
for it) cannot send a call, its credentials or its body somewhere else. Every wait read from a
vendor's answer is finite and at most ``MAX_VENDOR_WAIT_S``.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from config_core.masking import redact
from connectors import egress
from connectors.errors import (
    AuthError,
    BlockedDestination,
    ConnectorError,
    RateLimited,
    Rejected,
    TransportError,
    Unavailable,
)
from connectors.transport import GuardedAdapter


def _timeout_from_env() -> tuple[float, float]:
    text = os.environ.get("APGCFG_HTTP_TIMEOUT_S", "3.05,10")
    connect, _, read = text.partition(",")
    return float(connect), float(read or connect)


DEFAULT_TIMEOUT_S = _timeout_from_env()
"""(connect, read) seconds on every vendor call that does not pass its own; set with
``APGCFG_HTTP_TIMEOUT_S=connect,read`` (default 3.05,10)."""

CONNECT_RETRIES = 2
"""Transport-level retries, for connection failures only (the request never reached the vendor)."""

USER_AGENT = "apg-central-config/0.1 (+https://example.invalid/apgcfg)"


def _max_wait_from_env() -> float:
    text = os.environ.get("APGCFG_MAX_VENDOR_WAIT_S", "3600")
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"APGCFG_MAX_VENDOR_WAIT_S must be a positive number, got {text!r}")
    return value


MAX_VENDOR_WAIT_S = _max_wait_from_env()
"""Longest wait any vendor answer may impose (Retry-After, reset headers, body fields); set with
``APGCFG_MAX_VENDOR_WAIT_S`` (default 3600). A longer or infinite ask waits this long."""

_session: requests.Session | None = None
_session_pid: int | None = None


def session() -> requests.Session:
    """This process's shared session (a new one after a fork)."""
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        _session = _build_session()
        _session_pid = os.getpid()
    return _session


def reset() -> None:
    """Forget the session and the proxy settings read so far (they are read again)."""
    global _session, _session_pid
    _session = _session_pid = None
    _proxies_for_origin.cache_clear()


@functools.lru_cache(maxsize=1024)
def _proxies_for_origin(origin: str) -> dict[str, str]:
    return requests.utils.get_environ_proxies(origin + "/")


def proxies_for(url: str) -> dict[str, str]:
    """The proxies a call to ``url`` takes, by requests' rules (``NO_PROXY`` included)."""
    parts = urlsplit(url)
    return _proxies_for_origin(f"{parts.scheme}://{parts.netloc}")


logging.getLogger("urllib3").setLevel(logging.ERROR)
"""urllib3 logs each connect retry (a warning, and debug lines) with the request's path, which
holds a webhook's token (Discord, Slack); the outcome is reported once, redacted, by ``send``'s
typed error instead."""


def _build_session() -> requests.Session:
    retry = Retry(total=CONNECT_RETRIES, connect=CONNECT_RETRIES, read=0, status=0, other=0,
                  backoff_factor=0.1, respect_retry_after_header=False, allowed_methods=None)
    adapter = GuardedAdapter(max_retries=retry, pool_maxsize=16)
    http = requests.Session()
    http.trust_env = False  # proxies are passed per call (proxies_for); no ~/.netrc
    http.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    http.headers["User-Agent"] = USER_AGENT
    return http


def send(method: str, url: str, *, secrets: Iterable[str] = (),
         timeout: Any = DEFAULT_TIMEOUT_S, accept_redirect: bool = False,
         **kwargs: Any) -> requests.Response:
    """Make one vendor call; a transport failure becomes ``TransportError``, secrets redacted.

    Redirects are never followed. A 3xx answer raises ``Rejected`` unless ``accept_redirect``
    (the caller reads it as an answer, as Jenkins' 303 to an already queued item). A call to
    an internal address that is not allowed raises ``BlockedDestination`` before connecting.
    """
    if kwargs.pop("allow_redirects", False):
        raise TypeError("connectors.http.send never follows redirects")
    host = urlsplit(url).hostname or ""
    _refuse_internal(host)
    try:
        response = session().request(method, url, timeout=timeout, allow_redirects=False,
                                     proxies=proxies_for(url), **kwargs)
    except requests.RequestException as exc:
        text = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise TransportError(f"{method} failed: {text}") from None
    if 300 <= response.status_code < 400 and not accept_redirect:
        response.close()
        raise Rejected(f"{method} to {host} answered {response.status_code}; redirects are not "
                       "followed, so the configured URL must be the final one",
                       status=response.status_code)
    return response


def _refuse_internal(host: str) -> None:
    """Refuse a literal internal address (or localhost) before any connection, pooled or new."""
    problem = egress.refusal(host) if host else None
    if problem:
        raise BlockedDestination(f"connection to {egress.normalize_host(host)} refused: it "
                                 f"{problem}")


def check(response: requests.Response, *, vendor: str, message: str | None = None,
          secrets: Iterable[str] = ()) -> requests.Response:
    """Return ``response`` if it succeeded, else raise the matching ``ConnectorError``.

    ``message`` is the vendor's own error text when the caller could parse one.
    """
    status = response.status_code
    if status < 400:
        return response
    detail = redact(message or _short_body(response), secrets)
    text = f"{vendor} answered {status}: {detail}".rstrip(": ")
    raise error_for(status, text, retry_after(response))


def error_for(status: int, text: str, wait_s: float | None) -> ConnectorError:
    """Map an HTTP status to the error type that decides retrying."""
    if status == 429:
        return RateLimited(text, status=status, retry_after_s=wait_s)
    if status >= 500:
        return Unavailable(text, status=status, retry_after_s=wait_s)
    if status in (401, 403):
        return AuthError(text, status=status)
    if status == 408:
        return Unavailable(text, status=status, retry_after_s=wait_s)
    return Rejected(text, status=status)


RESET_HEADERS = ("x-ratelimit-reset", "x-rate-limit-reset")
"""Rate-limit reset headers that hold an epoch second (Auth0, Okta, GitHub)."""


def json_object(response: requests.Response) -> dict[str, Any]:
    """The response body as a JSON object; ``{}`` when it is not one (an HTML error page)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def retry_after(response: requests.Response) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), else from an epoch
    rate-limit reset header (``RESET_HEADERS``), or None."""
    wait = parse_retry_after(response.headers.get("Retry-After"))
    return wait if wait is not None else reset_wait(response.headers)


def bounded_wait(wait_s: float | None) -> float | None:
    """``wait_s`` within ``[0, MAX_VENDOR_WAIT_S]``; None for None or NaN (no wait known)."""
    if wait_s is None or math.isnan(wait_s):
        return None
    return min(max(0.0, wait_s), MAX_VENDOR_WAIT_S)


def reset_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until the epoch second of a rate-limit reset header, rounded up, capped; or None."""
    for name in RESET_HEADERS:
        try:
            epoch = float(headers.get(name) or "")
        except ValueError:
            continue
        wait_s = bounded_wait(epoch - time.time())
        return None if wait_s is None else float(min(math.ceil(wait_s), MAX_VENDOR_WAIT_S))
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date), capped; None if unreadable."""
    if not value:
        return None
    try:
        return bounded_wait(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return bounded_wait(when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _short_body(response: requests.Response, limit: int = 300) -> str:
    text = (response.text or "").strip()
    return text if len(text) <= limit else text[:limit] + "..."
