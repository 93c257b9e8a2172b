"""Client of another environment's HTTP API (``apgcfg serve``), for multi-environment sync.

Calls go through the shared client (timeouts, outbound policy, no redirects) and fail with the
shared error types; the API key is sent as a bearer token and redacted from every error text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from connectors import http
from connectors.base import resolve_env_refs
from connectors.errors import Rejected


@dataclass(frozen=True)
class Remote:
    """A key as the other environment shows it: its version and value (masked if secret)."""

    version: int
    value: Any


@dataclass(frozen=True)
class PutResult:
    """The other environment's answer to a write: applied, or a change request (pending)."""

    status: str
    version: int | None
    request_id: str | None


class EnvironmentApi:
    """One target environment's ``/v1`` API."""

    def __init__(self, name: str, endpoint: str, api_key: str) -> None:
        self.name = name
        self.endpoint = endpoint.rstrip("/")
        resolved = resolve_env_refs("multi_env_sync", {"environments": {name: {
            "api_key": api_key}}})
        self._api_key = resolved["environments"][name]["api_key"]
        self.vendor = f"environment {name!r}"

    def __repr__(self) -> str:
        return f"<EnvironmentApi {self.name} {self.endpoint}>"

    def get(self, key: str) -> Remote | None:
        """The key there (None when it has no value)."""
        response = self._call("GET", f"/v1/configs/{quote(key)}")
        if response.status_code == 404:
            return None
        body = self._checked(response)
        return Remote(int(body.get("version", 0)), body.get("value"))

    def put(self, key: str, value: Any, *, reason: str, idempotency_key: str,
            require_approval: bool) -> PutResult:
        """Write the key there; sent again with the same ``idempotency_key``, applied once."""
        response = self._call("PUT", f"/v1/configs/{quote(key)}", json={
            "value": value, "reason": reason, "idempotency_key": idempotency_key,
            "require_approval": require_approval})
        body = self._checked(response)
        return PutResult(str(body.get("status")), body.get("version"), body.get("request_id"))

    def approval(self, request_id: str) -> dict[str, Any] | None:
        """A change request there (None when it is unknown)."""
        response = self._call("GET", f"/v1/approvals/{quote(request_id)}")
        if response.status_code == 404:
            return None
        return self._checked(response)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return http.send(method, self.endpoint + path, secrets=[self._api_key],
                         headers={"Authorization": f"Bearer {self._api_key}"}, **kwargs)

    def _checked(self, response: Any) -> dict[str, Any]:
        detail = http.json_object(response).get("detail")
        http.check(response, vendor=self.vendor, secrets=[self._api_key],
                   message=str(detail) if detail else None)
        body = http.json_object(response)
        if not body:
            raise Rejected(f"{self.vendor} answered {response.status_code} without a JSON object",
                           status=response.status_code)
        return body
