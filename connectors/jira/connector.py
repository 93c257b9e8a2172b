"""JiraConnector: settings, and the few calls it makes (create, search, myself)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from connectors import http
from connectors.base import BaseConnector
from connectors.errors import (
    ConnectorError,
    RateLimited,
    Rejected,
    Skipped,
    Unavailable,
)
from connectors.jira.payload import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    DEFAULT_ISSUE_TYPES,
    DEFAULT_LABELS,
    KINDS,
    LABEL_LIMIT,
    build_payload,
    fingerprint,
    issue_kind,
    search_body,
)
from connectors.settings import Setting, http_url, list_of_str

STEP = "issue"
"""The one object this connector creates per event (its dedupe record's name)."""

SEARCH_SETTLE_S = 30.0
"""Jira Cloud's JQL search is eventually consistent: after a create whose answer was lost, an
empty search is trusted only once this long has passed since that create was sent."""

NOTHING_CREATED_STATUS = 503
"""Jira's overload answer, to be treated like 429 (vendor contract): the create was refused, so
the retry creates without a search (and without waiting ``SEARCH_SETTLE_S``). After any other
5xx the issue may exist, and the retry looks for it first."""

PROJECT_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]+$")
"""Jira project keys: an uppercase letter, then uppercase letters, digits or ``_``."""

ACCEPT_JSON = {"Accept": "application/json"}


def check_api_version(value: int) -> str | None:
    return None if value in API_VERSIONS else f"must be one of {list(API_VERSIONS)}"


def check_project_key(value: str) -> str | None:
    if PROJECT_KEY_RE.match(value):
        return None
    return "must be a Jira project key such as 'CONFIG' (uppercase letters, digits, '_')"


def check_issue_types(value: dict[str, Any]) -> str | None:
    unknown = sorted(set(value) - set(DEFAULT_ISSUE_TYPES))
    if unknown:
        return f"has unknown kind(s) {unknown}; known: {sorted(DEFAULT_ISSUE_TYPES)}"
    if not all(isinstance(name, str) and name.strip() for name in value.values()):
        return "must map each kind to an issue type name (a non-empty string)"
    return None


def check_labels(value: list[Any]) -> str | None:
    problem = list_of_str(value)
    if problem:
        return problem
    for label in value:
        if any(ch.isspace() for ch in label):
            return f"must not contain spaces (Jira refuses them): {label!r}"
        if len(label) > LABEL_LIMIT:
            return f"must be at most {LABEL_LIMIT} characters each"
    return None


class JiraConnector(BaseConnector):
    """Opens one Jira issue per configuration change, error or security violation."""

    name = "jira"
    rate_limit = "2/s"
    rate_limit_source = "per-second burst limits per endpoint, numbers not published"
    settings = (
        Setting("server_url", required=True, check=http_url,
                doc="Jira site (https://yourcompany.atlassian.net) or self-hosted server URL."),
        Setting("username", required=True, doc="Account email (Cloud) or user name."),
        Setting("api_token", required=True, secret=True,
                doc="API token; sent as basic auth `username:api_token`."),
        Setting("default_project", required=True, check=check_project_key,
                doc="Key of the project issues are created in, e.g. `CONFIG`."),
        Setting("issue_types", kind=dict, default=dict(DEFAULT_ISSUE_TYPES),
                check=check_issue_types,
                doc="Issue type per kind: `config_change`, `config_error`, `schema_update`; "
                    "kinds left out keep their default."),
        Setting("api_version", kind=int, default=DEFAULT_API_VERSION, check=check_api_version,
                doc="3: ADF description (Cloud); 2: plain-text description (Server/DC too)."),
        Setting("labels", kind=list, default=list(DEFAULT_LABELS), check=check_labels,
                doc="Labels on every issue (no spaces); `apgcfg-<event_id>` is always added."),
    )

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Create the event's issue once; skip event types that need no issue."""
        if issue_kind(event) is None:
            raise Skipped(f"jira opens issues for {', '.join(KINDS)} events, "
                          f"not {event.get('type')!r}")
        return self.create_once(STEP, lambda: self._create(event), lambda: self._find(event))

    def health_check(self) -> bool:
        """True when ``GET /rest/api/{v}/myself`` answers 200 (the credentials work)."""
        try:
            response = http.send("GET", self.url("myself"), secrets=self.secrets(),
                                 auth=self._auth(), headers=ACCEPT_JSON)
        except ConnectorError:
            return False
        return response.status_code == 200

    def url(self, path: str) -> str:
        """``{server_url}/rest/api/{api_version}/{path}``."""
        base = str(self.config["server_url"]).rstrip("/")
        return f"{base}/rest/api/{self.config.get('api_version', DEFAULT_API_VERSION)}/{path}"

    def _create(self, event: dict[str, Any]) -> dict[str, Any]:
        self.context.mark(STEP, "creating", {"sent_at": time.time()})
        try:
            response = self._call("POST", "issue", build_payload(event, self.config))
        except Unavailable as exc:
            if exc.status == NOTHING_CREATED_STATUS:
                self.context.forget(STEP)  # Jira's "busy" answer: the retry just creates
            raise  # other 5xx: the issue may exist, so the retry looks first
        return self._ref(http.json_object(response))

    def _find(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The issue labelled with the event's fingerprint, if Jira's search shows it."""
        label = fingerprint(event)
        issues = self._search(label)
        if issues:
            return {**self._ref(issues[0]), "found_by": "search"}
        sent_at = ((self.context.created(STEP) or {}).get("ref") or {}).get("sent_at")
        wait_s = float(sent_at) + SEARCH_SETTLE_S - time.time() if sent_at else 0.0
        if wait_s > 0:
            raise Unavailable(f"jira: no issue labelled {label} found yet; Jira's search can lag "
                              f"a just-created issue, so looking again in {wait_s:.0f} s",
                              retry_after_s=wait_s)
        return None

    def _search(self, label: str) -> list[dict[str, Any]]:
        """Issues labelled ``label``: enhanced search, or the legacy one where that is absent."""
        try:
            response = self._call("POST", "search/jql", search_body(label))
        except Rejected as exc:
            if exc.status != 404:  # Jira Server / Data Center has no /search/jql
                raise
            response = self._call("POST", "search", search_body(label))
        issues = http.json_object(response).get("issues")
        return [issue for issue in issues if isinstance(issue, dict)] if issues else []

    def _call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        response = http.send(method, self.url(path), secrets=self.secrets(), json=body,
                             auth=self._auth(), headers=ACCEPT_JSON)
        if response.status_code >= 400:
            raise_for(response, self.secrets())
        return response

    def _auth(self) -> tuple[str, str]:
        return str(self.config["username"]), str(self.config["api_token"])

    def _ref(self, issue: dict[str, Any]) -> dict[str, Any]:
        key = issue.get("key")
        base = str(self.config["server_url"]).rstrip("/")
        return {"issue_key": key, "issue_id": issue.get("id"),
                "issue_url": f"{base}/browse/{key}" if key else issue.get("self")}


def raise_for(response: Any, secrets: set[str]) -> None:
    """Raise the typed error for a failed call, with Jira's own message and wait."""
    try:
        http.check(response, vendor="jira", message=error_text(http.json_object(response)),
                   secrets=secrets)
    except (RateLimited, Unavailable) as exc:
        if exc.retry_after_s is None:
            exc.retry_after_s = reset_wait_s(response.headers.get("X-RateLimit-Reset"))
        raise


def error_text(body: dict[str, Any]) -> str | None:
    """Jira's ``errorMessages`` and ``errors`` (field: message) as one line, or None."""
    parts = [str(m) for m in body.get("errorMessages") or () if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    return "; ".join(parts) or None


def reset_wait_s(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds until an ``X-RateLimit-Reset`` ISO-8601 time (never negative), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return http.bounded_wait(moment.timestamp() - (time.time() if now_s is None else now_s))
