"""OAuth 2.0 client-credentials tokens, requested once per expiry and shared by the process.

A small cache rather than an OAuth library: the token request goes through the one shared
HTTP client (its timeouts, error mapping and secret redaction), which a library's own session
would bypass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connectors import http
from connectors.errors import AuthError, ConnectorError

EXPIRY_MARGIN_S = 60.0
"""A token is renewed this long before it expires, so no call carries a token about to lapse."""

DEFAULT_LIFETIME_S = 3600.0
"""Assumed lifetime when the token response gives no ``expires_in``."""


@dataclass(frozen=True)
class TokenRequest:
    """Where and how to ask for a token (``form`` holds grant_type, client id and secret...)."""

    token_url: str
    form: tuple[tuple[str, str], ...]
    as_json: bool = False

    def secrets(self) -> set[str]:
        return {value for name, value in self.form if "secret" in name}


@dataclass
class _Cached:
    token: str
    renew_at: float


_cache: dict[TokenRequest, _Cached] = {}
_lock = threading.Lock()
requests_made = 0
"""Token requests this process has sent (tests check that tokens are reused)."""


def client_credentials(token_url: str, client_id: str, client_secret: str,
                       *, as_json: bool = False, **extra: str) -> TokenRequest:
    """A client-credentials token request (``extra``: audience, scope, ...)."""
    form = {"grant_type": "client_credentials", "client_id": client_id,
            "client_secret": client_secret, **extra}
    return TokenRequest(token_url, tuple(sorted(form.items())), as_json)


def bearer_token(request: TokenRequest, *, vendor: str, secrets: Iterable[str] = ()) -> str:
    """A valid access token for ``request``: the cached one, or a new one when it is due."""
    with _lock:
        cached = _cache.get(request)
        if cached is not None and time.monotonic() < cached.renew_at:
            return cached.token
        fresh = _fetch(request, vendor, {*secrets, *request.secrets()})
        _cache[request] = fresh
        return fresh.token


def forget(request: TokenRequest) -> None:
    """Drop a cached token (the vendor said it is no longer valid)."""
    with _lock:
        _cache.pop(request, None)


def _fetch(request: TokenRequest, vendor: str, secrets: set[str]) -> _Cached:
    global requests_made
    body: dict[str, Any] = ({"json": dict(request.form)} if request.as_json
                            else {"data": dict(request.form)})
    requests_made += 1
    response = http.send("POST", request.token_url, secrets=secrets, **body)
    try:
        http.check(response, vendor=f"{vendor} token endpoint", secrets=secrets,
                   message=_error_text(response))
    except AuthError:
        raise
    except ConnectorError as exc:
        if exc.status == 400:  # invalid_client / unauthorized_client: a credential problem
            raise AuthError(str(exc), status=400) from None
        raise
    payload = response.json()
    token = payload.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthError(f"{vendor} token endpoint returned no access_token")
    lifetime = float(payload.get("expires_in") or DEFAULT_LIFETIME_S)
    renew_at = time.monotonic() + max(lifetime - EXPIRY_MARGIN_S, lifetime / 2)
    return _Cached(token, renew_at)


def _error_text(response: Any) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    if isinstance(payload, dict):
        parts = [payload.get("error"), payload.get("error_description")]
        return ": ".join(str(p) for p in parts if p) or None
    return None
