"""GitLab REST v4 calls through the shared client: URLs, authentication, errors, rate limits.

Project ids, file paths and branch names are URL-encoded as one path segment each
(``group/project`` → ``group%2Fproject``): GitLab answers 404 to unencoded ones. Every call
sends ``PRIVATE-TOKEN`` except the trigger-token endpoint, whose token travels in the form.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn
from urllib.parse import quote

import requests

from connectors import http
from connectors.errors import Rejected, RetryableError

VENDOR = "gitlab"
API_PREFIX = "/api/v4"

LOOKUP_PAGE_SIZE = 20
"""Newest pipelines on a ref examined when looking for one an earlier attempt started."""

AUTH_HINTS = {
    401: " (check integrations.gitlab.token: it is invalid, expired or revoked)",
    403: " (integrations.gitlab.token lacks the api scope or a role on the project)",
}
TRIGGER_HINTS = {404: " (check integrations.gitlab.trigger_token and project_id)"}


def api_root(base_url: str) -> str:
    """``https://host[/prefix]/api/v4`` from a server URL (an ``/api/v4`` suffix is kept once)."""
    root = base_url.rstrip("/")
    if root.endswith(API_PREFIX):
        root = root[: -len(API_PREFIX)]
    return root + API_PREFIX


def encode(value: Any) -> str:
    """One URL path segment: ``/`` and every other reserved character percent-encoded."""
    return quote(str(value), safe="")


class GitLabApi:
    """The calls the connector makes on one project."""

    def __init__(self, config: dict[str, Any], secrets: set[str]) -> None:
        self.project_url = f"{api_root(config['base_url'])}/projects/{encode(config['project_id'])}"
        self.token = str(config["token"])
        self.secrets = secrets

    def call(self, method: str, path: str, *, allow: tuple[int, ...] = (),
             hints: dict[int, str] | None = None, token: bool = True,
             **kwargs: Any) -> requests.Response:
        """One request on the project; statuses in ``allow`` are returned, other errors raise."""
        headers = {"PRIVATE-TOKEN": self.token} if token else {}
        response = http.send(method, self.project_url + path, secrets=self.secrets,
                             headers=headers, **kwargs)
        if response.status_code >= 400 and response.status_code not in allow:
            raise_for(response, self.secrets, hints)
        return response

    # look-ups -----------------------------------------------------------------------------------

    def project(self) -> dict[str, Any]:
        return json_body(self.call("GET", ""))

    def file_exists(self, path: str, ref: str) -> bool:
        """Whether ``path`` exists on branch ``ref`` (a missing project or ref still raises)."""
        response = self.call("GET", f"/repository/files/{encode(path)}", params={"ref": ref},
                             allow=(404,))
        if response.status_code == 404:
            if "File Not Found" not in (gitlab_message(json_body(response)) or ""):
                raise_for(response, self.secrets)
            return False
        return True

    def branch(self, name: str) -> dict[str, Any] | None:
        response = self.call("GET", f"/repository/branches/{encode(name)}", allow=(404,))
        if response.status_code == 404:
            if "Branch Not Found" not in (gitlab_message(json_body(response)) or ""):
                raise_for(response, self.secrets)
            return None
        return json_body(response)

    def merge_requests(self, source_branch: str) -> list[dict[str, Any]]:
        """Every merge request from ``source_branch`` (open ones first, then newest first)."""
        response = self.call("GET", "/merge_requests",
                             params={"source_branch": source_branch, "state": "all"})
        found = [mr for mr in _json_list(response) if mr.get("source_branch") == source_branch]
        return sorted(found, key=lambda mr: (mr.get("state") != "opened", -int(mr.get("iid", 0))))

    def pipelines(self, ref: str, source: str) -> list[dict[str, Any]]:
        params = {"ref": ref, "source": source, "per_page": LOOKUP_PAGE_SIZE,
                  "order_by": "id", "sort": "desc"}
        return _json_list(self.call("GET", "/pipelines", params=params))

    def pipeline_variables(self, pipeline_id: Any) -> dict[str, str]:
        response = self.call("GET", f"/pipelines/{encode(pipeline_id)}/variables")
        return {str(v.get("key")): str(v.get("value")) for v in _json_list(response)}

    # creates ------------------------------------------------------------------------------------

    def create_commit(self, body: dict[str, Any]) -> dict[str, Any]:
        return json_body(self.call("POST", "/repository/commits", json=body))

    def create_merge_request(self, body: dict[str, Any]) -> requests.Response:
        """The answer, 201 or 409 (another open merge request from that branch)."""
        return self.call("POST", "/merge_requests", json=body, allow=(409,))

    def create_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        return json_body(self.call("POST", "/pipeline", json=body))

    def trigger_pipeline(self, form: list[tuple[str, str]]) -> dict[str, Any]:
        return json_body(self.call("POST", "/trigger/pipeline", data=form, token=False,
                               hints=TRIGGER_HINTS))


def raise_for(response: requests.Response, secrets: set[str],
              hints: dict[int, str] | None = None) -> NoReturn:
    """Raise the typed error for a failed call, with GitLab's message and its reset headers."""
    message = gitlab_message(json_body(response)) or _text(response)
    hint = {**AUTH_HINTS, **(hints or {})}.get(response.status_code, "")
    try:
        http.check(response, vendor=VENDOR, message=(message + hint) if message else None,
                   secrets=secrets)
    except RetryableError as exc:
        wait_s = reset_wait_s(response) if response.status_code == 429 else None
        if wait_s is not None:
            exc.retry_after_s = max(exc.retry_after_s or 0.0, wait_s)
        raise
    raise Rejected(f"{VENDOR} answered {response.status_code}: {message}",
                   status=response.status_code)  # only for a status below 400 (a caller's bug)


def reset_wait_s(response: requests.Response) -> float | None:
    """Seconds until ``RateLimit-Reset`` (Unix time) or ``RateLimit-ResetTime`` (HTTP date)."""
    waits = []
    reset = response.headers.get("RateLimit-Reset")
    if reset:
        try:
            wait_s = http.bounded_wait(float(reset) - time.time())
        except ValueError:
            wait_s = None
        if wait_s is not None:
            waits.append(wait_s)
    reset_time = http.parse_retry_after(response.headers.get("RateLimit-ResetTime"))
    if reset_time is not None:
        waits.append(reset_time)
    return max(waits) if waits else None


def gitlab_message(body: Any) -> str | None:
    """GitLab's error text: ``message`` (a string, a list, or field → list) or ``error``."""
    if not isinstance(body, dict):
        return None
    message = body.get("message")
    if isinstance(message, dict):
        parts = []
        for field, problems in message.items():
            items = problems if isinstance(problems, list) else [problems]
            text = ", ".join(str(p) for p in items)
            parts.append(text if field == "base" else f"{field} {text}")
        return "; ".join(parts) or None
    if isinstance(message, list):
        return "; ".join(str(m) for m in message) or None
    if message:
        return str(message)
    for field in ("error", "error_description"):
        if body.get(field):
            return str(body[field])
    return None


def _text(response: requests.Response, limit: int = 200) -> str:
    text = " ".join((response.text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def json_body(response: requests.Response) -> Any:
    """The parsed JSON body, or {} when there is none."""
    try:
        return response.json()
    except ValueError:
        return {}


def _json_list(response: requests.Response) -> list[dict[str, Any]]:
    body = json_body(response)
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
