"""Loopback fake of the GitHub REST API (issues, workflow dispatch, runs) enforcing its contract.

Every request is checked in this order: ``User-Agent`` (403), ``Accept:
application/vnd.github+json`` (415), ``X-GitHub-Api-Version`` (400 when missing or unsupported),
``Authorization: Bearer``/``token`` with the exact token (401 "Requires authentication" /
"Bad credentials"), the primary rate limit set with ``rate_limit`` (403 with
``x-ratelimit-remaining: 0``), then the route. The fake is stricter than GitHub on ``Accept``
and a missing version (GitHub tolerates both), so a connector that forgets them fails here.

Routes: ``GET /rate_limit``, ``GET /user``, ``GET /repos/{o}/{r}``, ``GET|POST
/repos/{o}/{r}/issues``, ``POST /repos/{o}/{r}/actions/workflows/{id|file}/dispatches``,
``GET /repos/{o}/{r}/actions/workflows/{id|file}/runs`` and ``GET /repos/{o}/{r}/actions/runs``.
A dispatch creates a run at once, titled by the workflow's ``run_name`` (``${{ inputs.x }}``
substituted) or, without one, by the workflow's name, as GitHub does.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

API_VERSIONS = ("2022-11-28", "2026-03-10")
"""Versions GitHub supports; any other ``X-GitHub-Api-Version`` is a 400."""

MEDIA_TYPE = "application/vnd.github+json"
RATE_LIMIT = 5000
"""``x-ratelimit-limit`` of an authenticated user."""

TITLE_LIMIT, BODY_LIMIT, LABEL_LIMIT, MAX_INPUTS = 256, 65536, 50, 25
DOCS = "https://docs.github.com/rest"
RESET_IN_HEADER = "X-Fake-Reset-In"
"""Internal: seconds until the reset, turned into ``x-ratelimit-reset`` when the reply is sent."""

_REPO_PATH = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_WORKFLOW_PATH = re.compile(r"^/actions/workflows/(?P<wf>[^/]+)/(?P<what>dispatches|runs)$")
_RUN_NAME_VAR = re.compile(r"\$\{\{\s*(?:github\.event\.)?inputs\.([A-Za-z0-9_-]+)\s*\}\}")


def github_error(status: int, message: str, docs: str = DOCS, **extra: Any) -> Reply:
    """GitHub's error body: ``message``, ``documentation_url`` and ``status``."""
    return json_reply(status, {"message": message, "documentation_url": docs,
                               "status": str(status), **extra})


def validation_failed(resource: str, field_name: str, code: str, message: str | None = None,
                      ) -> Reply:
    """422 Validation Failed with one entry in ``errors``."""
    error = {"resource": resource, "field": field_name, "code": code}
    if message:
        error["message"] = message
    return github_error(422, "Validation Failed", errors=[error])


def invalid_request(text: str) -> Reply:
    """422 "Invalid request." with a schema complaint, as GitHub words them."""
    return github_error(422, f"Invalid request.\n\n{text}")


NOT_FOUND = "Not Found"
PRIMARY_MESSAGE = ("API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
                   "for help, please include the request ID 0000:0000:0000:0000:0000.")
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes "
                     "before you try again. If you reach out to GitHub Support for help, please "
                     "include the request ID 0000:0000:0000:0000:0000.")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Workflow:
    """A workflow file of a repository."""

    id: int
    path: str
    name: str
    inputs: dict[str, bool] | None
    run_name: str | None
    dispatchable: bool = True

    def as_json(self, repo: str) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "path": self.path, "state": "active",
                "html_url": f"https://github.com/{repo}/blob/main/{self.path}"}


@dataclass
class Repo:
    """A repository and what it holds."""

    full_name: str
    has_issues: bool = True
    branches: set[str] = field(default_factory=lambda: {"main"})
    issues: list[dict[str, Any]] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    workflows: dict[int, Workflow] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def workflow(self, ref: str) -> Workflow | None:
        """By numeric id or by file name, as the API accepts."""
        for wf in self.workflows.values():
            if ref == str(wf.id) or ref == wf.path.rsplit("/", 1)[-1]:
                return wf
        return None


@dataclass
class _Slow:
    delay_s: float
    remaining: int
    method: str | None
    path_suffix: str | None
    body_contains: str | None

    def matches(self, request: RecordedRequest) -> bool:
        return ((self.method is None or request.method == self.method)
                and (self.path_suffix is None or request.path.endswith(self.path_suffix))
                and (self.body_contains is None
                     or self.body_contains in request.body.decode(errors="replace")))


class FakeGitHub(ServerBase):
    """GitHub's REST API on 127.0.0.1: validates calls, records issues and dispatches."""

    def __init__(self, delay_s: float = 0.0, token: str | None = None) -> None:
        super().__init__(delay_s)
        alphabet = string.ascii_letters + string.digits
        self.token = token or "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))
        self._repos: dict[str, Repo] = {}
        self._slow: list[_Slow] = []
        self._ids = itertools.count(1000)
        self._used = 0
        self._state_lock = threading.Lock()

    # set-up ---------------------------------------------------------------------------------

    def add_repo(self, full_name: str, *, has_issues: bool = True,
                 branches: tuple[str, ...] = ("main",)) -> str:
        """Create a repository (``owner/repo``) and return its full name."""
        with self._state_lock:
            self._repos[full_name] = Repo(full_name, has_issues, set(branches))
        return full_name

    def add_workflow(self, repo: str, path: str = ".github/workflows/deploy-config.yml", *,
                     name: str = "Deploy configuration", inputs: dict[str, bool] | None = None,
                     run_name: str | None = None, dispatchable: bool = True) -> int:
        """Add a workflow file; ``inputs`` (name → required) makes dispatches check them."""
        with self._state_lock:
            wf = Workflow(next(self._ids), path, name, inputs, run_name, dispatchable)
            self._repos[repo].workflows[wf.id] = wf
        return wf.id

    def repo_url(self, repo: str) -> str:
        """The API URL of a repository (for ``fail_next(webhook_url=...)``)."""
        return f"{self.base_url}/repos/{repo}"

    # test controls --------------------------------------------------------------------------

    def slow_next(self, delay_s: float, *, method: str | None = None,
                  path_suffix: str | None = None, body_contains: str | None = None,
                  times: int = 1) -> None:
        """Answer the next matching request ``delay_s`` late, after doing what it asked."""
        with self._state_lock:
            self._slow.append(_Slow(delay_s, times, method and method.upper(), path_suffix,
                                    body_contains))

    def primary_rate_limit(self, *, status: int = 403, reset_in_s: float = 1.0, times: int = 1,
                           repo: str | None = None, method: str | None = None) -> None:
        """The next request(s) exceed the primary limit: ``x-ratelimit-remaining: 0``."""
        self.fail_next(status, times, {"message": PRIMARY_MESSAGE,
                                       "documentation_url": f"{DOCS}/using-the-rest-api/"
                                                            "rate-limits-for-the-rest-api"},
                       _primary_headers(reset_in_s),
                       webhook_url=repo and self.repo_url(repo), method=method)

    def secondary_rate_limit(self, *, status: int = 403, retry_after_s: float | None = None,
                             times: int = 1, repo: str | None = None,
                             method: str | None = None) -> None:
        """The next request(s) hit a secondary limit (``retry-after`` only when given)."""
        headers = {"retry-after": str(math.ceil(retry_after_s))} if retry_after_s else {}
        headers.update({"x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": "4000"})
        self.fail_next(status, times, {"message": SECONDARY_MESSAGE,
                                       "documentation_url": f"{DOCS}/overview/"
                                                            "rate-limits-for-the-rest-api"},
                       headers, webhook_url=repo and self.repo_url(repo), method=method)

    def reset(self) -> None:
        """Also forget issues, labels and runs (repositories and workflows stay)."""
        super().reset()
        with self._state_lock:
            self._slow.clear()
            for repo in self._repos.values():
                repo.issues.clear()
                repo.labels.clear()
                repo.runs.clear()

    # observations ---------------------------------------------------------------------------

    def issues(self, repo: str | None = None) -> list[dict[str, Any]]:
        """Issues created (as recorded messages), optionally in one repository."""
        return [m for m in self.messages(repo and self.repo_url(repo)) if m["kind"] == "issue"]

    def dispatches(self, repo: str | None = None) -> list[dict[str, Any]]:
        """Workflow dispatches accepted, optionally in one repository."""
        return [m for m in self.messages(repo and self.repo_url(repo))
                if m["kind"] == "dispatch"]

    # ServerBase hooks -----------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """The ``owner/repo`` a URL or path is about."""
        match = _REPO_PATH.match(urlsplit(url_or_path).path)
        return match["repo"] if match else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """GitHub's own body (and headers) for a scripted failure."""
        if status == 429:
            return _with(github_error(429, PRIMARY_MESSAGE), _primary_headers(retry_after_s))
        messages = {401: "Bad credentials", 403: "Resource not accessible by personal access "
                    "token", 404: NOT_FOUND, 410: "Issues are disabled for this repo",
                    422: "Validation Failed", 500: "Server Error", 502: "Server Error",
                    503: "Service Unavailable"}
        reply = github_error(status, messages.get(status, "Error"))
        if status == 503 and retry_after_s > 0:
            reply.headers["Retry-After"] = str(math.ceil(retry_after_s))
        return reply

    def respond(self, request: RecordedRequest) -> Reply:
        """Answer, then wait out a ``slow_next`` delay, then stamp rate-limit resets."""
        reply = super().respond(request)
        slow = self._take_slow(request)
        if slow:
            self._stopping.wait(slow)
        headers = dict(reply.headers)
        reset_in = headers.pop(RESET_IN_HEADER, None)
        if reset_in is None:
            return reply
        headers["x-ratelimit-reset"] = str(math.ceil(time.time() + float(reset_in)))
        return Reply(reply.status, reply.body, headers)

    def _take_slow(self, request: RecordedRequest) -> float:
        with self._state_lock:
            for slow in self._slow:
                if slow.matches(request):
                    slow.remaining -= 1
                    if slow.remaining <= 0:
                        self._slow.remove(slow)
                    return slow.delay_s
        return 0.0

    def handle(self, request: RecordedRequest) -> Reply:
        """Headers, credentials, rate limit, then the route."""
        refusal = self._refuse_headers(request) or self._refuse_token(request)
        if refusal is not None:
            return refusal
        window = self.take_rate_slot("token")
        if window is not None and not window.allowed:
            return _with(github_error(403, PRIMARY_MESSAGE), _primary_headers(
                window.reset_after_s, window.limit))
        with self._state_lock:
            self._used += 1
            used = self._used
        reply = self._route(request)
        return _with(reply, {"x-ratelimit-limit": str(RATE_LIMIT),
                             "x-ratelimit-remaining": str(max(RATE_LIMIT - used, 0)),
                             "x-ratelimit-used": str(used), "x-ratelimit-resource": "core",
                             RESET_IN_HEADER: "3600", "X-GitHub-Media-Type": "github.v3; "
                             "format=json", "x-github-api-version-selected": API_VERSIONS[0]})

    # checks ---------------------------------------------------------------------------------

    def _refuse_headers(self, request: RecordedRequest) -> Reply | None:
        if not request.header("User-Agent"):
            return Reply(403, b"Request forbidden by administrative rules. Please make sure "
                              b"your request has a User-Agent header.",
                         {"Content-Type": "text/plain"})
        accept = request.header("Accept") or ""
        if MEDIA_TYPE not in [part.split(";")[0].strip() for part in accept.split(",")]:
            return github_error(415, f"Unsupported 'Accept' header: {accept!r}. This fake "
                                f"requires {MEDIA_TYPE!r}.")
        version = request.header("X-GitHub-Api-Version")
        if version not in API_VERSIONS:
            return github_error(400, f"API version {version!r} is not supported.",
                                f"{DOCS}/about-the-rest-api/api-versions")
        return None

    def _refuse_token(self, request: RecordedRequest) -> Reply | None:
        auth = request.header("Authorization")
        if not auth:
            return github_error(401, "Requires authentication")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token") or credential.strip() != self.token:
            return github_error(401, "Bad credentials")
        return None

    # routes ---------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest) -> Reply:
        if request.path == "/rate_limit" and request.method == "GET":
            core = {"limit": RATE_LIMIT, "remaining": RATE_LIMIT - self._used,
                    "used": self._used, "reset": int(time.time()) + 3600}
            return json_reply(200, {"resources": {"core": core}, "rate": core})
        if request.path == "/user" and request.method == "GET":
            return json_reply(200, {"login": "apg-bot", "id": 1, "type": "User"})
        match = _REPO_PATH.match(request.path)
        if match is None:
            return github_error(404, NOT_FOUND)
        with self._state_lock:
            repo = self._repos.get(match["repo"])
            if repo is None:
                return github_error(404, NOT_FOUND)
            return self._repo_route(request, repo, match["rest"] or "")

    def _repo_route(self, request: RecordedRequest, repo: Repo, rest: str) -> Reply:
        method = request.method
        if rest == "" and method == "GET":
            return json_reply(200, {"full_name": repo.full_name, "has_issues": repo.has_issues,
                                    "default_branch": "main"})
        if rest == "/issues" and method == "POST":
            return self._create_issue(request, repo)
        if rest == "/issues" and method == "GET":
            return self._list_issues(request, repo)
        if rest == "/actions/runs" and method == "GET":
            return _list_runs(request, repo.runs)
        wf_match = _WORKFLOW_PATH.match(rest)
        if wf_match is None:
            return github_error(404, NOT_FOUND)
        workflow = repo.workflow(wf_match["wf"])
        if workflow is None:
            return github_error(404, NOT_FOUND)
        if wf_match["what"] == "runs" and method == "GET":
            return _list_runs(request, [r for r in repo.runs if r["workflow_id"] == workflow.id])
        if wf_match["what"] == "dispatches" and method == "POST":
            return self._dispatch(request, repo, workflow)
        return github_error(404, NOT_FOUND)

    # issues ---------------------------------------------------------------------------------

    def _create_issue(self, request: RecordedRequest, repo: Repo) -> Reply:
        body = request.json
        refusal = _refuse_body(request) or _refuse_issue(body)
        if refusal is not None:
            return refusal
        if not repo.has_issues:
            return github_error(410, "Issues are disabled for this repo")
        labels = list(dict.fromkeys(body.get("labels") or []))
        repo.labels.update(labels)
        number = len(repo.issues) + 1
        issue = {
            "id": next(self._ids), "node_id": f"I_{secrets.token_hex(6)}", "number": number,
            "title": str(body["title"]), "body": body.get("body"), "state": "open",
            "labels": [{"id": next(self._ids), "name": name, "color": "ededed",
                        "default": False} for name in labels],
            "url": f"{self.base_url}/repos/{repo.full_name}/issues/{number}",
            "html_url": f"https://github.com/{repo.full_name}/issues/{number}",
            "user": {"login": "apg-bot"}, "created_at": now_iso(), "updated_at": now_iso(),
        }
        repo.issues.append(issue)
        self.accept(repo.full_name, {"kind": "issue", "repository": repo.full_name,
                                     "number": number, "title": issue["title"],
                                     "body": issue["body"], "labels": labels})
        return json_reply(201, issue, {"Location": issue["url"]})

    def _list_issues(self, request: RecordedRequest, repo: Repo) -> Reply:
        state = request.query.get("state", "open")
        if state not in ("open", "closed", "all"):
            return validation_failed("Issue", "state", "invalid")
        wanted = [name for name in request.query.get("labels", "").split(",") if name]
        found = [issue for issue in reversed(repo.issues)
                 if (state == "all" or issue["state"] == state)
                 and set(wanted) <= {label["name"] for label in issue["labels"]}]
        return json_reply(200, _page(request, found))

    # workflows ------------------------------------------------------------------------------

    def _dispatch(self, request: RecordedRequest, repo: Repo, workflow: Workflow) -> Reply:
        body = request.json
        refusal = _refuse_body(request) or _refuse_dispatch(body, repo, workflow)
        if refusal is not None:
            return refusal
        inputs = body.get("inputs") or {}
        run = {
            "id": next(self._ids), "name": workflow.name,
            "display_title": _run_title(workflow, inputs), "event": "workflow_dispatch",
            "status": "queued", "conclusion": None, "head_branch": body["ref"],
            "workflow_id": workflow.id, "path": workflow.path, "created_at": now_iso(),
            "html_url": f"https://github.com/{repo.full_name}/actions/runs/{next(self._ids)}",
        }
        repo.runs.append(run)
        self.accept(repo.full_name, {"kind": "dispatch", "repository": repo.full_name,
                                     "workflow_id": workflow.id, "workflow": workflow.path,
                                     "ref": body["ref"], "inputs": inputs, "run_id": run["id"]})
        if body.get("return_run_details"):
            return json_reply(200, {"workflow_run_id": run["id"],
                                    "run_url": f"{self.base_url}/repos/{repo.full_name}/"
                                               f"actions/runs/{run['id']}",
                                    "html_url": run["html_url"]})
        return Reply(204)


def _refuse_body(request: RecordedRequest) -> Reply | None:
    if request.json is None:
        return github_error(400, "Problems parsing JSON")
    if not isinstance(request.json, dict):
        return invalid_request(f"For 'links/0/schema', {request.json!r} is not an object.")
    return None


def _refuse_issue(body: dict[str, Any]) -> Reply | None:
    if "title" not in body:
        return invalid_request('"title" wasn\'t supplied.')
    title = body["title"]
    if isinstance(title, bool) or not isinstance(title, (str, int)):
        return invalid_request(f"For 'properties/title', {title!r} is not a string or integer.")
    if not str(title).strip():
        return validation_failed("Issue", "title", "missing_field")
    if len(str(title)) > TITLE_LIMIT:
        return validation_failed("Issue", "title", "custom",
                                 f"title is too long (maximum is {TITLE_LIMIT} characters)")
    text = body.get("body")
    if text is not None and not isinstance(text, str):
        return invalid_request(f"For 'properties/body', {text!r} is not a string or null.")
    if text is not None and len(text) > BODY_LIMIT:
        return validation_failed("Issue", "body", "custom",
                                 f"body is too long (maximum is {BODY_LIMIT} characters)")
    return _refuse_labels(body.get("labels"))


def _refuse_labels(labels: Any) -> Reply | None:
    if labels is None:
        return None
    if not isinstance(labels, list):
        return invalid_request(f"For 'properties/labels', {labels!r} is not an array.")
    for label in labels:
        if not isinstance(label, str):
            return invalid_request(f"For 'items', {label!r} is not a string or object.")
        if not label.strip():
            return validation_failed("Label", "name", "missing_field")
        if len(label) > LABEL_LIMIT:
            return validation_failed("Label", "name", "custom",
                                     f"name is too long (maximum is {LABEL_LIMIT} characters)")
    return None


def _refuse_dispatch(body: dict[str, Any], repo: Repo, workflow: Workflow) -> Reply | None:
    unknown = sorted(set(body) - {"ref", "inputs", "return_run_details"})
    if unknown:
        return invalid_request(f'"{unknown[0]}" is not a permitted key.')
    if "ref" not in body:
        return invalid_request('"ref" wasn\'t supplied.')
    if not isinstance(body["ref"], str):
        return invalid_request(f"For 'properties/ref', {body['ref']!r} is not a string.")
    inputs = body.get("inputs")
    if inputs is not None:
        refusal = _refuse_inputs(inputs)
        if refusal is not None:
            return refusal
    if not workflow.dispatchable:
        return github_error(422, "Workflow does not have 'workflow_dispatch' trigger")
    if body["ref"] not in repo.branches:
        return github_error(422, f"No ref found for: {body['ref']}")
    return _refuse_undeclared(inputs or {}, workflow)


def _refuse_inputs(inputs: Any) -> Reply | None:
    if not isinstance(inputs, dict):
        return invalid_request(f"For 'properties/inputs', {inputs!r} is not an object.")
    if len(inputs) > MAX_INPUTS:
        return invalid_request(f"For 'properties/inputs', {len(inputs)} properties is more "
                               f"than the maximum of {MAX_INPUTS}.")
    for name, value in inputs.items():
        if not isinstance(value, str):
            return invalid_request(f"For 'properties/{name}', {value!r} is not a string.")
    return None


def _refuse_undeclared(inputs: dict[str, str], workflow: Workflow) -> Reply | None:
    if workflow.inputs is None:
        return None
    unexpected = [name for name in inputs if name not in workflow.inputs]
    if unexpected:
        quoted = ", ".join(f'"{name}"' for name in unexpected)
        return github_error(422, f"Unexpected inputs provided: [{quoted}]")
    for name, required in workflow.inputs.items():
        if required and not inputs.get(name):
            return github_error(422, f"Required input '{name}' not provided")
    return None


def _run_title(workflow: Workflow, inputs: dict[str, str]) -> str:
    if not workflow.run_name:
        return workflow.name
    return _RUN_NAME_VAR.sub(lambda m: inputs.get(m.group(1), ""), workflow.run_name)


def _list_runs(request: RecordedRequest, runs: list[dict[str, Any]]) -> Reply:
    event = request.query.get("event")
    created = request.query.get("created", "")
    branch = request.query.get("branch")
    found = [run for run in reversed(runs)
             if (event is None or run["event"] == event)
             and (branch is None or run["head_branch"] == branch)
             and _created_matches(run["created_at"], created)]
    page = _page(request, found)
    return json_reply(200, {"total_count": len(found), "workflow_runs": page})


def _created_matches(created_at: str, query: str) -> bool:
    """GitHub's ``created`` filter: ``>=T``, ``<=T``, ``>T``, ``<T`` or ``A..B``."""
    if not query:
        return True
    moment = _parse_time(created_at)
    if ".." in query:
        low, high = query.split("..", 1)
        return _parse_time(low) <= moment <= _parse_time(high)
    for op, test in ((">=", lambda a, b: a >= b), ("<=", lambda a, b: a <= b),
                     (">", lambda a, b: a > b), ("<", lambda a, b: a < b)):
        if query.startswith(op):
            return bool(test(moment, _parse_time(query[len(op):])))
    return moment.date() == _parse_time(query).date()


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _page(request: RecordedRequest, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
    page = max(int(request.query.get("page", "1")), 1)
    return items[(page - 1) * per_page: page * per_page]


def _primary_headers(reset_in_s: float, limit: int = RATE_LIMIT) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0",
            "x-ratelimit-used": str(limit), "x-ratelimit-resource": "core",
            RESET_IN_HEADER: str(reset_in_s)}


def _with(reply: Reply, headers: dict[str, str]) -> Reply:
    return Reply(reply.status, reply.body, {**headers, **reply.headers})
