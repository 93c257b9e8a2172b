"""Loopback fake of the Jira Cloud REST API (v2 and v3) that enforces its contract.

Routes, under ``/rest/api/{2,3,latest}/``: ``POST issue``, ``POST``/``GET search/jql`` (the
enhanced JQL search), ``search`` (the legacy search: 410 Gone as on Cloud, or the Data Center
search with ``legacy_search=True``, which then has no ``search/jql``), ``GET myself``.

Order of checks: route, basic auth with the exact ``username:api_token`` (401), rate limit
(429 with ``Retry-After`` and the ``X-RateLimit-*`` headers), JSON body (415/400), then the
fields: project exists, issue type valid for it, summary required / ≤ 255 / one line, description
ADF (v3) or string (v2) within 32,767 characters, labels without spaces, no field off the create
screen. Failures answer Jira's ``{"errorMessages": [...], "errors": {field: message}}``.

``index_lag_s`` models Cloud's eventually consistent search (new issues show up late);
``slow_creates`` makes a create answer late *after* the issue exists (a lost answer).
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

ROUTE_RE = re.compile(r"^/rest/api/(?P<version>2|3|latest)/(?P<endpoint>issue|search/jql|search"
                      r"|myself)/?$")
JQL_RE = re.compile(r'^\s*labels\s*(?:=|in\s*\()\s*(?:"(?P<quoted>(?:[^"\\]|\\.)+)"'
                    r"|(?P<bare>[^\s\"()]+))\s*\)?\s*(?:order\s+by\s+\w+(?:\s+(?:asc|desc))?)?\s*$",
                    re.IGNORECASE)
"""The JQL this fake understands: ``labels = "x"`` (or ``labels in ("x")``), optional order."""

SUMMARY_LIMIT = 255
LABEL_LIMIT = 255
TEXT_FIELD_LIMIT = 32_767
DEFAULT_PROJECTS = {"CONFIG": ("Task", "Bug", "Story", "Epic", "Subtask")}
SCREEN_FIELDS = frozenset({"project", "issuetype", "summary", "description", "labels",
                           "priority", "assignee"})
"""Fields on the default create screen; others are refused as "not on the appropriate screen"."""

UNAUTHORIZED = {"errorMessages": ["You are not authenticated. Authentication required to "
                                  "perform this operation."], "errors": {}}
FORBIDDEN = {"errorMessages": ["You do not have permission to create issues in this project."],
             "errors": {}}
RATE_LIMITED = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
SEARCH_GONE = {"errorMessages": ["The requested API has been removed. Please migrate to the "
                                 "/rest/api/3/search/jql API."], "errors": {}}


def jira_error(status: int, errors: dict[str, str] | None = None,
               messages: list[str] | None = None, headers: dict[str, str] | None = None) -> Reply:
    """Jira's error body."""
    return json_reply(status, {"errorMessages": messages or [], "errors": errors or {}}, headers)


def rate_limited(retry_after_s: float, limit: int = 100) -> Reply:
    """Jira's 429: whole-second ``Retry-After`` and the ``X-RateLimit-*`` headers."""
    wait = max(1, math.ceil(retry_after_s))
    reset = datetime.now(UTC) + timedelta(seconds=wait, minutes=1)
    headers = {"Retry-After": str(wait), "X-RateLimit-Limit": str(limit),
               "X-RateLimit-Remaining": "0", "X-RateLimit-NearLimit": "true",
               "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),  # rounded up a minute
               "RateLimit-Reason": "jira-burst-based"}
    return json_reply(429, RATE_LIMITED, headers)


def basic(username: str, token: str) -> str:
    """The ``Authorization`` header value for ``username:token``."""
    return "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()


def adf_problem(node: Any, path: str = "description") -> str | None:
    """Why ``node`` is not an Atlassian Document (top level) or a valid ADF node, else None."""
    if path == "description":
        if not isinstance(node, dict) or node.get("type") != "doc" or node.get("version") != 1 \
                or not isinstance(node.get("content"), list):
            return ("Operation value must be an Atlassian Document (see the Atlassian Document "
                    "Format)")
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return f"{path}: every ADF node needs a string 'type'"
    if node["type"] == "text" and not (isinstance(node.get("text"), str) and node["text"]):
        return f"{path}: a text node needs non-empty 'text'"
    for i, child in enumerate(node.get("content") or ()):
        problem = adf_problem(child, f"{path}.content[{i}]")
        if problem:
            return problem
    return None


def adf_text_length(node: Any) -> int:
    """Characters of text in an ADF document."""
    if not isinstance(node, dict):
        return 0
    own = len(node["text"]) if isinstance(node.get("text"), str) else 0
    return own + sum(adf_text_length(child) for child in node.get("content") or ())


class FakeJira(ServerBase):
    """Jira on 127.0.0.1: authenticates, validates creates, stores issues, answers JQL."""

    def __init__(self, delay_s: float = 0.0, *, username: str = "automation@yourcompany.com",
                 api_token: str | None = None,
                 projects: dict[str, tuple[str, ...]] | None = None,
                 screen_fields: frozenset[str] = SCREEN_FIELDS, index_lag_s: float = 0.0,
                 legacy_search: bool = False) -> None:
        super().__init__(delay_s)
        self.username = username
        self.api_token = api_token or "ATATT" + secrets.token_urlsafe(24)
        self.projects = dict(projects or DEFAULT_PROJECTS)
        self.screen_fields = screen_fields
        self.index_lag_s = index_lag_s
        self.legacy_search = legacy_search
        self._issues: list[dict[str, Any]] = []
        self._ids = itertools.count(10000)
        self._slow: list[tuple[float, str | None]] = []
        self._slow_lock = threading.Lock()

    # test controls --------------------------------------------------------------------------

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A minimal ``integrations.jira`` config against this fake."""
        return {"server_url": self.base_url, "username": self.username,
                "api_token": self.api_token, "default_project": "CONFIG", **overrides}

    def url(self, endpoint: str, version: int = 3) -> str:
        """Full URL of an endpoint (``issue``, ``search/jql``, ``myself``...)."""
        return f"{self.base_url}/rest/api/{version}/{endpoint}"

    def slow_creates(self, delay_s: float, times: int = 1, label: str | None = None) -> None:
        """Answer the next ``times`` creates (carrying ``label``, if given) ``delay_s`` late,
        after the issue was stored: the client times out although Jira created it."""
        with self._slow_lock:
            self._slow.extend([(delay_s, label)] * times)

    def issues(self, label: str | None = None) -> list[dict[str, Any]]:
        """Stored issues (``id``, ``key``, ``fields``...), optionally those carrying ``label``."""
        with self._lock:
            return [dict(i) for i in self._issues
                    if label is None or label in i["fields"].get("labels", ())]

    def reset(self) -> None:
        """Also forget the stored issues and slow creates."""
        super().reset()
        with self._lock:
            self._issues.clear()
        with self._slow_lock:
            self._slow.clear()

    # ServerBase hooks -----------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """The endpoint a URL or path names (``issue``, ``search/jql``...), any API version."""
        match = ROUTE_RE.match(urlsplit(url_or_path).path)
        return match["endpoint"] if match else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Jira's own body (and headers) for a scripted failure."""
        if status == 429:
            return rate_limited(retry_after_s)
        if status == 401:
            return json_reply(401, UNAUTHORIZED, {"WWW-Authenticate": 'Basic realm="jira"'})
        if status == 403:
            return json_reply(403, FORBIDDEN)
        if status == 400:
            return jira_error(400, {"summary": "You must specify a summary of the issue."})
        headers = {"Retry-After": str(math.ceil(retry_after_s))} \
            if status == 503 and retry_after_s > 0 else {}
        return jira_error(status, messages=[f"Jira answered {status} (scripted failure)"],
                          headers=headers)

    def respond(self, request: RecordedRequest) -> Reply:
        """As ServerBase, then hold a created issue's answer back if ``slow_creates`` says so."""
        reply = super().respond(request)
        delay_s = self._take_slow(request, reply)
        if delay_s > 0:
            self._stopping.wait(delay_s)
        return reply

    def handle(self, request: RecordedRequest) -> Reply:
        """Route, authenticate, rate-limit and answer one request."""
        match = ROUTE_RE.match(request.path)
        if match is None:
            return jira_error(404, messages=[f"null for uri: {request.path}"])
        if request.header("Authorization") != basic(self.username, self.api_token):
            return json_reply(401, UNAUTHORIZED, {"WWW-Authenticate": 'Basic realm="jira"'})
        window = self.take_rate_slot(self.username)
        if window is not None and not window.allowed:
            return rate_limited(window.reset_after_s, window.limit)
        version, endpoint = match["version"], match["endpoint"]
        if endpoint == "myself":
            return self._myself(request)
        if endpoint == "issue":
            return self._create(request, version)
        if endpoint == "search/jql":
            if self.legacy_search:  # Data Center: the enhanced search does not exist
                return jira_error(404, messages=[f"null for uri: {request.path}"])
            return self._search(request, legacy=False)
        if not self.legacy_search:
            return json_reply(410, SEARCH_GONE)
        return self._search(request, legacy=True)

    # endpoints ------------------------------------------------------------------------------

    def _myself(self, request: RecordedRequest) -> Reply:
        if request.method != "GET":
            return jira_error(405, messages=["Method Not Allowed"])
        return json_reply(200, {"accountId": "5b10ac8d82e05b22cc7d4ef5",
                                "emailAddress": self.username, "displayName": "Automation",
                                "active": True})

    def _create(self, request: RecordedRequest, version: str) -> Reply:
        if request.method != "POST":
            return jira_error(405, messages=["Method Not Allowed"])
        if "application/json" not in (request.header("Content-Type") or ""):
            return jira_error(415, messages=["Unsupported Media Type"])
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            return jira_error(400, messages=["Can not deserialize instance of the request body;"
                                             " expected {\"fields\": {...}}"])
        fields: dict[str, Any] = body["fields"]
        errors = self._field_errors(fields, version)
        if errors:
            return jira_error(400, errors)
        return json_reply(201, self._store(fields, version))

    def _field_errors(self, fields: dict[str, Any], version: str) -> dict[str, str]:
        errors: dict[str, str] = {}
        for name in sorted(set(fields) - self.screen_fields):
            errors[name] = (f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                            "or unknown.")
        project = self._project(fields.get("project"))
        if project is None:
            errors["project"] = "valid project is required"
        issuetype = fields.get("issuetype")
        if not isinstance(issuetype, dict) or not issuetype.get("name"):
            errors["issuetype"] = "issue type is required"
        elif project is not None and issuetype["name"] not in self.projects[project]:
            errors["issuetype"] = "The issue type selected is invalid."
        problem = _summary_problem(fields.get("summary"))
        if problem:
            errors["summary"] = problem
        problem = _description_problem(fields.get("description"), version)
        if problem:
            errors["description"] = problem
        problem = _labels_problem(fields.get("labels"))
        if problem:
            errors["labels"] = problem
        return errors

    def _project(self, project: Any) -> str | None:
        if not isinstance(project, dict):
            return None
        key = project.get("key")
        return key if isinstance(key, str) and key in self.projects else None

    def _store(self, fields: dict[str, Any], version: str) -> dict[str, str]:
        with self._lock:
            number = next(self._ids)
            project = fields["project"]["key"]
            key = f"{project}-{sum(1 for i in self._issues if i['project'] == project) + 1}"
            issue = {"id": str(number), "key": key,
                     "self": f"{self.base_url}/rest/api/{version}/issue/{number}",
                     "project": project, "fields": fields, "created_at": time.time()}
            self._issues.append(issue)
        self.accept(project, {"key": key, **fields})
        return {"id": issue["id"], "key": key, "self": issue["self"]}

    def _search(self, request: RecordedRequest, *, legacy: bool) -> Reply:
        if request.method == "POST":
            query = request.json if isinstance(request.json, dict) else {}
            jql, wanted = query.get("jql"), query.get("fields")
        elif request.method == "GET":
            jql = request.query.get("jql")
            wanted = request.query["fields"].split(",") if request.query.get("fields") else None
        else:
            return jira_error(405, messages=["Method Not Allowed"])
        if not isinstance(jql, str) or not jql.strip():
            return jira_error(400, messages=["Unbounded JQL queries are not allowed here. Please "
                                             "add a search restriction to your query."])
        match = JQL_RE.match(jql)
        if match is None:
            return jira_error(400, messages=[f"Error in the JQL Query: this fake understands "
                                             f'only labels = "..."; got {jql!r}'])
        label = match["bare"] or re.sub(r"\\(.)", r"\1", match["quoted"])
        visible_before = time.time() - (0.0 if legacy else self.index_lag_s)
        found = [_shown(i, wanted) for i in self.issues(label) if i["created_at"] <= visible_before]
        if legacy:
            return json_reply(200, {"startAt": 0, "maxResults": 50, "total": len(found),
                                    "issues": found})
        return json_reply(200, {"issues": found, "isLast": True})

    def _take_slow(self, request: RecordedRequest, reply: Reply) -> float:
        if request.method != "POST" or self.webhook_key(request.path) != "issue" \
                or reply.status != 201:
            return 0.0
        fields = (request.json or {}).get("fields") or {}
        with self._slow_lock:
            for i, (delay_s, label) in enumerate(self._slow):
                if label is None or label in (fields.get("labels") or ()):
                    del self._slow[i]
                    return delay_s
        return 0.0


def _shown(issue: dict[str, Any], wanted: Any) -> dict[str, Any]:
    """An issue as search returns it: only its id unless fields were named."""
    if not wanted:
        return {"id": issue["id"]}
    fields = {name: issue["fields"][name] for name in wanted if name in issue["fields"]}
    return {"id": issue["id"], "key": issue["key"], "self": issue["self"], "fields": fields}


def _summary_problem(summary: Any) -> str | None:
    if not isinstance(summary, str) or not summary.strip():
        return "You must specify a summary of the issue."
    if len(summary) > SUMMARY_LIMIT:
        return f"Summary must be less than {SUMMARY_LIMIT} characters."
    if "\n" in summary or "\r" in summary:
        return "The summary is invalid because it contains newline characters."
    return None


def _description_problem(description: Any, version: str) -> str | None:
    if description is None:
        return None
    if version in ("2", "latest"):  # "latest" is v2
        if not isinstance(description, str):
            return "Operation value must be a string"
        length = len(description)
    else:
        problem = adf_problem(description)
        if problem:
            return problem
        length = adf_text_length(description)
    if length > TEXT_FIELD_LIMIT:
        return (f"The entered text is too long. It exceeds the allowed limit of "
                f"{TEXT_FIELD_LIMIT:,} characters.")
    return None


def _labels_problem(labels: Any) -> str | None:
    if labels is None:
        return None
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        return "labels must be a list of non-empty strings"
    for label in labels:
        if any(ch.isspace() for ch in label):
            return f"The label '{label}' contains spaces which is invalid."
        if len(label) > LABEL_LIMIT:
            return f"The label '{label[:20]}...' exceeds the {LABEL_LIMIT} character limit."
    return None
