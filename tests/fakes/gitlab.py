"""A loopback GitLab (REST v4) that enforces what the connector relies on.

It holds projects with branches and files, and answers as GitLab does: ``PRIVATE-TOKEN`` (or
``Authorization: Bearer``) must be the exact token (401 ``{"message": "401 Unauthorized"}``);
project ids are numeric or URL-encoded paths, and file paths and branch names are one encoded
segment (an unencoded ``/`` is a 404); a commit needs an existing start branch, may not create a
branch that exists, and ``create`` / ``update`` / ``delete`` must fit the file's existence; a
second open merge request for the same source and target branch is a 409; trigger tokens belong
to one project (404 otherwise); pipelines need an existing ref. The look-ups (files, branches,
merge requests by source branch, pipelines by ref and source, pipeline variables) return what
it really holds. ``messages()`` lists the merge requests and pipelines it created; commits are
in ``commits()``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

API_PREFIX = "/api/v4/"
NOT_FOUND_ROUTE = {"error": "404 Not Found"}
UNAUTHORIZED = {"message": "401 Unauthorized"}
REFERENCE_NOT_FOUND = {"message": {"base": ["Reference not found"]}}
ACTIONS = ("create", "delete", "move", "update", "chmod")
MR_STATES = ("opened", "closed", "locked", "merged", "all")
RATE_LIMIT_NAME = "throttle_authenticated_api"


@dataclass
class Project:
    """One project: branches (name → head sha), trees (sha → files), what was created."""

    id: int
    path: str
    heads: dict[str, str] = field(default_factory=dict)
    trees: dict[str, dict[str, str]] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    merge_requests: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    trigger_tokens: set[str] = field(default_factory=set)

    def files(self, branch: str) -> dict[str, str]:
        return self.trees[self.heads[branch]]


@dataclass
class _Slow:
    resource: str
    method: str | None
    delay_s: float
    remaining: int


def sha_of(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def rate_limited(retry_after_s: float, limit: int = 600) -> Reply:
    """GitLab's 429: plain ``Retry later`` with ``Retry-After`` and the ``RateLimit-*`` set."""
    wait = max(1, math.ceil(retry_after_s))
    reset = time.time() + wait
    headers = {"Content-Type": "text/plain", "Retry-After": str(wait),
               "RateLimit-Name": RATE_LIMIT_NAME, "RateLimit-Limit": str(limit),
               "RateLimit-Observed": str(limit + 1), "RateLimit-Remaining": "0",
               "RateLimit-Reset": str(math.ceil(reset)),
               "RateLimit-ResetTime": formatdate(reset, usegmt=True)}
    return Reply(429, b"Retry later\n", headers)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bad_ref(name: str) -> bool:
    return (not name or " " in name or ".." in name or name.endswith(("/", ".", ".lock"))
            or name.startswith(("-", "/")) or any(c in name for c in "~^:?*[\\"))


class FakeGitLab(ServerBase):
    """GitLab REST v4 on 127.0.0.1: projects, commits, merge requests, pipelines."""

    def __init__(self, token: str | None = None, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.token = token or "glpat-" + secrets.token_urlsafe(15)
        self._projects: dict[int, Project] = {}
        self._ids = itertools.count(1000)
        self._slow: list[_Slow] = []

    # test set-up ------------------------------------------------------------------------------

    def add_project(self, path: str = "group/config-repo", branches: tuple[str, ...] = ("main",),
                    files: dict[str, str] | None = None) -> int:
        """A project whose ``branches`` all start from one commit holding ``files``."""
        project = Project(next(self._ids), path)
        root = sha_of(path, "root", files)
        project.trees[root] = dict(files or {})
        for name in branches:
            project.heads[name] = root
        with self._lock:
            self._projects[project.id] = project
        return project.id

    def add_trigger(self, project_id: int) -> str:
        """A pipeline trigger token of one project."""
        token = "glptt-" + secrets.token_hex(20)
        with self._lock:
            self._projects[project_id].trigger_tokens.add(token)
        return token

    def slow(self, resource: str, delay_s: float, times: int = 1, method: str | None = "POST",
             ) -> None:
        """Answer the next ``times`` requests to ``resource`` (e.g. ``merge_requests``,
        ``repository/commits``, ``trigger/pipeline``) only after ``delay_s``; their effect
        happens first, as with a vendor that accepts a request whose answer gets lost."""
        with self._lock:
            self._slow.append(_Slow(resource, method, delay_s, times))

    def endpoint_url(self, project_id: int, resource: str) -> str:
        """A URL ``fail_next(webhook_url=...)`` can target: one resource of one project."""
        return f"{self.base_url}{API_PREFIX}projects/{project_id}/{resource}"

    # observations -----------------------------------------------------------------------------

    def project(self, project_id: int) -> Project:
        with self._lock:
            return self._projects[project_id]

    def commits(self, project_id: int | None = None) -> list[dict[str, Any]]:
        return self._collect("commits", project_id)

    def merge_requests(self, project_id: int | None = None) -> list[dict[str, Any]]:
        return self._collect("merge_requests", project_id)

    def pipelines(self, project_id: int | None = None) -> list[dict[str, Any]]:
        return self._collect("pipelines", project_id)

    def file(self, project_id: int, branch: str, path: str) -> str | None:
        with self._lock:
            project = self._projects[project_id]
            return project.files(branch).get(path) if branch in project.heads else None

    def branches(self, project_id: int) -> list[str]:
        with self._lock:
            return sorted(self._projects[project_id].heads)

    def _collect(self, kind: str, project_id: int | None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for p in self._projects.values()
                    if project_id in (None, p.id) for item in getattr(p, kind)]

    def reset(self) -> None:
        """Also forget slow rules (projects and what they hold stay)."""
        super().reset()
        with self._lock:
            self._slow.clear()

    # ServerBase hooks -------------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """``<project id>:<resource>`` of an API path (ids inside the resource dropped)."""
        route = self._route(urlsplit(url_or_path).path)
        if route is None:
            return None
        ref, rest = route
        project = self._find_project(ref)
        kind = "/".join(part for part in rest if not part.isdigit()) if rest else "project"
        if rest[:2] in (["repository", "files"], ["repository", "branches"]):
            kind = "/".join(rest[:2])
        return f"{project.id if project else ref}:{kind}"

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        if status == 429:
            return rate_limited(retry_after_s)
        if status in (502, 503, 504):
            page = f"<html><body><h1>{status}</h1>GitLab is not responding</body></html>"
            return Reply(status, page.encode(), {"Content-Type": "text/html"})
        texts = {400: "400 Bad request", 401: "401 Unauthorized", 403: "403 Forbidden",
                 404: "404 Not Found", 409: "409 Conflict", 500: "500 Internal Server Error"}
        return json_reply(status, {"message": texts.get(status, f"{status} Error")})

    def respond(self, request: RecordedRequest) -> Reply:
        reply = super().respond(request)
        delay_s = self._take_slow(request)
        if delay_s:
            self._stopping.wait(delay_s)
        return reply

    def _take_slow(self, request: RecordedRequest) -> float:
        key = self.webhook_key(request.path) or ""
        with self._lock:
            for rule in self._slow:
                if key.endswith(":" + rule.resource) and rule.method in (None, request.method):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._slow.remove(rule)
                    return rule.delay_s
        return 0.0

    # routing ----------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, list[str]] | None:
        if not path.startswith(API_PREFIX):
            return None
        parts = path[len(API_PREFIX):].split("/")
        if len(parts) < 2 or parts[0] != "projects" or not parts[1]:
            return None
        return unquote(parts[1]), [unquote(p) for p in parts[2:]]

    def _find_project(self, ref: str) -> Project | None:
        with self._lock:
            if ref.isdigit():
                return self._projects.get(int(ref))
            return next((p for p in self._projects.values() if p.path == ref), None)

    def handle(self, request: RecordedRequest) -> Reply:
        route = self._route(request.path)
        if route is None:
            return json_reply(404, NOT_FOUND_ROUTE)
        ref, rest = route
        if rest == ["trigger", "pipeline"] and request.method == "POST":
            return self._trigger(request, ref)
        if not self._authenticated(request):
            return json_reply(401, UNAUTHORIZED)
        window = self.take_rate_slot(self.token)
        if window is not None and not window.allowed:
            return rate_limited(window.reset_after_s, window.limit)
        project = self._find_project(ref)
        if project is None:
            return json_reply(404, {"message": "404 Project Not Found"})
        handler = self._handler(request.method, rest)
        if handler is None:
            return json_reply(404, NOT_FOUND_ROUTE)
        with self._lock:
            return handler(request, project, rest)

    def _authenticated(self, request: RecordedRequest) -> bool:
        bearer = request.header("Authorization") or ""
        return request.header("PRIVATE-TOKEN") == self.token or bearer == f"Bearer {self.token}"

    def _handler(self, method: str, rest: list[str]) -> Any:
        routes = {
            ("GET", ()): self._get_project,
            ("GET", ("repository", "files", "*")): self._get_file,
            ("GET", ("repository", "branches", "*")): self._get_branch,
            ("POST", ("repository", "commits")): self._create_commit,
            ("POST", ("merge_requests",)): self._create_mr,
            ("GET", ("merge_requests",)): self._list_mrs,
            ("POST", ("pipeline",)): self._create_pipeline,
            ("GET", ("pipelines",)): self._list_pipelines,
            ("GET", ("pipelines", "#", "variables")): self._pipeline_variables,
        }
        return routes.get((method, _shape(rest)))

    # reads ------------------------------------------------------------------------------------

    def _get_project(self, request: RecordedRequest, project: Project, rest: list[str]) -> Reply:
        return json_reply(200, {"id": project.id, "path_with_namespace": project.path,
                                "name": project.path.rsplit("/", 1)[-1],
                                "default_branch": "main", "web_url": self._web(project)})

    def _get_file(self, request: RecordedRequest, project: Project, rest: list[str]) -> Reply:
        ref = request.query.get("ref")
        if not ref:
            return json_reply(400, {"error": "ref is missing"})
        if ref not in project.heads:
            return json_reply(404, {"message": "404 Commit Not Found"})
        content = project.files(ref).get(rest[2])
        if content is None:
            return json_reply(404, {"message": "404 File Not Found"})
        head = project.heads[ref]
        return json_reply(200, {
            "file_name": rest[2].rsplit("/", 1)[-1], "file_path": rest[2],
            "size": len(content.encode()), "encoding": "base64",
            "content": base64.b64encode(content.encode()).decode(), "ref": ref,
            "blob_id": sha_of(content), "commit_id": head, "last_commit_id": head})

    def _get_branch(self, request: RecordedRequest, project: Project, rest: list[str]) -> Reply:
        head = project.heads.get(rest[2])
        if head is None:
            return json_reply(404, {"message": "404 Branch Not Found"})
        return json_reply(200, {"name": rest[2], "merged": False, "protected": False,
                                "default": rest[2] == "main",
                                "commit": {"id": head, "short_id": head[:8],
                                           "web_url": f"{self._web(project)}/-/commit/{head}"}})

    def _list_mrs(self, request: RecordedRequest, project: Project, rest: list[str]) -> Reply:
        state = request.query.get("state", "all")
        if state not in MR_STATES:
            return json_reply(400, {"error": "state does not have a valid value"})
        found = [mr for mr in reversed(project.merge_requests)
                 if state in ("all", mr["state"])
                 and all(request.query.get(f) in (None, mr[f])
                         for f in ("source_branch", "target_branch"))]
        return json_reply(200, found[: self._per_page(request)])

    def _list_pipelines(self, request: RecordedRequest, project: Project,
                        rest: list[str]) -> Reply:
        found = [_pipeline_view(p) for p in reversed(project.pipelines)
                 if all(request.query.get(f) in (None, p[f]) for f in ("ref", "source", "status"))]
        return json_reply(200, found[: self._per_page(request)])

    def _pipeline_variables(self, request: RecordedRequest, project: Project,
                            rest: list[str]) -> Reply:
        pipeline = next((p for p in project.pipelines if p["id"] == int(rest[1])), None)
        if pipeline is None:
            return json_reply(404, {"message": "404 Not found"})
        return json_reply(200, [{"variable_type": v.get("variable_type", "env_var"),
                                 "key": v["key"], "value": v["value"], "raw": False}
                                for v in pipeline["variables"]])

    @staticmethod
    def _per_page(request: RecordedRequest) -> int:
        text = request.query.get("per_page", "20")
        return min(100, max(1, int(text))) if text.isdigit() else 20

    def _web(self, project: Project) -> str:
        return f"{self.base_url}/{project.path}"

    # commits ----------------------------------------------------------------------------------

    def _create_commit(self, request: RecordedRequest, project: Project,
                       rest: list[str]) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        missing = [f for f in ("branch", "commit_message", "actions") if not body.get(f)]
        if missing:
            return json_reply(400, {"error": ", ".join(f"{f} is missing" for f in missing)})
        problem = _check_actions(body["actions"])
        if problem:
            return json_reply(400, {"error": problem})
        branch, start = str(body["branch"]), str(body.get("start_branch") or body["branch"])
        if start not in project.heads:
            return _commit_error("You can only create or edit files when you are on a branch")
        if start != branch and branch in project.heads and not body.get("force"):
            return _commit_error(f"A branch called '{branch}' already exists. "
                                 "Switch to that branch in order to make changes")
        if start != branch and bad_ref(branch):
            return _commit_error(f"Something went wrong when we tried to create '{branch}' "
                                 "for you: Branch name is invalid")
        files = dict(project.files(start))
        for action in body["actions"]:
            problem = _apply(files, action)
            if problem:
                return _commit_error(problem)
        return json_reply(201, self._store_commit(project, body, branch, start, files))

    def _store_commit(self, project: Project, body: dict[str, Any], branch: str, start: str,
                      files: dict[str, str]) -> dict[str, Any]:
        parent = project.heads[start]
        sha = sha_of(parent, body, len(project.commits), time.time())
        project.trees[sha] = files
        project.heads[branch] = sha
        message = str(body["commit_message"])
        commit = {"id": sha, "short_id": sha[:8], "title": message.split("\n", 1)[0],
                  "message": message, "parent_ids": [parent], "created_at": now_iso(),
                  "branch": branch, "actions": body["actions"],
                  "web_url": f"{self._web(project)}/-/commit/{sha}",
                  "stats": {"additions": 1, "deletions": 0, "total": 1}}
        project.commits.append(commit)
        return {k: v for k, v in commit.items() if k not in ("branch", "actions")}

    # merge requests ---------------------------------------------------------------------------

    def _create_mr(self, request: RecordedRequest, project: Project, rest: list[str]) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        missing = [f for f in ("source_branch", "target_branch", "title") if not body.get(f)]
        if missing:
            return json_reply(400, {"error": ", ".join(f"{f} is missing" for f in missing)})
        source, target = body["source_branch"], body["target_branch"]
        if source == target:
            return json_reply(422, {"message": [
                "You can't use same project/branch for source and target"]})
        for name in (source, target):
            if name not in project.heads:
                which = "Source" if name == source else "Target"
                return json_reply(400, {"message": [f'{which} branch "{name}" does not exist']})
        conflict = next((mr for mr in project.merge_requests if mr["state"] == "opened"
                         and mr["source_branch"] == source and mr["target_branch"] == target),
                        None)
        if conflict is not None:
            return json_reply(409, {"message": [
                "Another open merge request already exists for this source branch: "
                f"!{conflict['iid']}"]})
        iid = len(project.merge_requests) + 1
        mr = {"id": next(self._ids), "iid": iid, "project_id": project.id,
              "title": body["title"], "description": body.get("description") or "",
              "state": "opened", "source_branch": source, "target_branch": target,
              "remove_source_branch": bool(body.get("remove_source_branch")),
              "labels": [], "created_at": now_iso(),
              "web_url": f"{self._web(project)}/-/merge_requests/{iid}"}
        project.merge_requests.append(mr)
        self._messages.append((f"{project.id}:merge_requests", dict(mr)))
        return json_reply(201, mr)

    # pipelines --------------------------------------------------------------------------------

    def _create_pipeline(self, request: RecordedRequest, project: Project,
                         rest: list[str]) -> Reply:
        body = request.json if isinstance(request.json, dict) else {}
        if not body.get("ref"):
            return json_reply(400, {"error": "ref is missing"})
        variables = body.get("variables") or []
        problem = _check_variables(variables)
        if problem:
            return json_reply(400, {"error": problem})
        if body["ref"] not in project.heads:
            return json_reply(400, REFERENCE_NOT_FOUND)
        return json_reply(201, self._store_pipeline(project, body["ref"], "api", variables))

    def _trigger(self, request: RecordedRequest, ref: str) -> Reply:
        params = {**request.query, **_form(request)}
        for name in ("token", "ref"):
            if not params.get(name):
                return json_reply(400, {"error": f"{name} is missing"})
        project = self._find_project(ref)
        if project is None or params["token"] not in project.trigger_tokens:
            return json_reply(404, {"message": "404 Not Found"})
        with self._lock:
            if params["ref"] not in project.heads:
                return json_reply(400, REFERENCE_NOT_FOUND)
            variables = [{"key": k[len("variables["):-1], "value": v, "variable_type": "env_var"}
                         for k, v in params.items()
                         if k.startswith("variables[") and k.endswith("]")]
            return json_reply(201, self._store_pipeline(project, params["ref"], "trigger",
                                                        variables))

    def _store_pipeline(self, project: Project, ref: str, source: str,
                        variables: list[dict[str, Any]]) -> dict[str, Any]:
        pipeline_id = next(self._ids)
        pipeline = {"id": pipeline_id, "iid": len(project.pipelines) + 1,
                    "project_id": project.id, "sha": project.heads[ref], "ref": ref,
                    "status": "created", "source": source, "created_at": now_iso(),
                    "web_url": f"{self._web(project)}/-/pipelines/{pipeline_id}",
                    "variables": [dict(v) for v in variables]}
        project.pipelines.append(pipeline)
        self._messages.append((f"{project.id}:pipelines", dict(pipeline)))
        return _pipeline_view(pipeline)


def _shape(rest: list[str]) -> tuple[str, ...]:
    """The route of a resource path: ``*`` for an encoded file or branch, ``#`` for an id."""
    if len(rest) == 3 and rest[:2] in (["repository", "files"], ["repository", "branches"]):
        return (*rest[:2], "*")
    if len(rest) == 3 and rest[0] == "pipelines" and rest[1].isdigit():
        return ("pipelines", "#", rest[2])
    return tuple(rest)


def _pipeline_view(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pipeline.items() if k != "variables"}


def _form(request: RecordedRequest) -> dict[str, str]:
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json" and isinstance(request.json, dict):
        flat = {k: str(v) for k, v in request.json.items() if k != "variables"}
        variables = request.json.get("variables") or {}
        flat.update({f"variables[{k}]": str(v) for k, v in dict(variables).items()})
        return flat
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    return {}


def _commit_error(message: str) -> Reply:
    return json_reply(400, {"message": message})


def _check_actions(actions: Any) -> str | None:
    if not isinstance(actions, list):
        return "actions is invalid"
    for i, action in enumerate(actions):
        if not isinstance(action, dict):
            return f"actions[{i}] is invalid"
        if action.get("action") not in ACTIONS:
            return f"actions[{i}][action] does not have a valid value"
        if not action.get("file_path"):
            return f"actions[{i}][file_path] is missing"
        if action["action"] in ("create", "update") and action.get("content") is None:
            return f"actions[{i}][content] is missing"
        if action.get("encoding", "text") not in ("text", "base64"):
            return f"actions[{i}][encoding] does not have a valid value"
    return None


def _apply(files: dict[str, str], action: dict[str, Any]) -> str | None:
    """Apply one commit action to ``files``; GitLab's (Gitaly's) error text when it cannot."""
    path = str(action["file_path"])
    if ".." in path.split("/"):
        return "Path cannot include directory traversal"
    kind = action["action"]
    if kind == "create" and path in files:
        return "A file with this name already exists"
    if kind in ("update", "delete", "chmod") and path not in files:
        return "A file with this name doesn't exist"
    if kind == "delete":
        del files[path]
    elif kind in ("create", "update"):
        content = str(action["content"])
        if action.get("encoding") == "base64":
            content = base64.b64decode(content).decode()
        files[path] = content
    return None


def _check_variables(variables: Any) -> str | None:
    if not isinstance(variables, list):
        return "variables is invalid"
    for i, variable in enumerate(variables):
        if not isinstance(variable, dict) or not variable.get("key"):
            return f"variables[{i}][key] is missing"
        if "value" not in variable:
            return f"variables[{i}][value] is missing"
        if variable.get("variable_type", "env_var") not in ("env_var", "file"):
            return f"variables[{i}][variable_type] does not have a valid value"
    return None


GUIDE_PROJECT = "group/config-repo"
"""The project the tests use, given by its path (URL-encoded by the connector)."""


def guide_config(fake: FakeGitLab, **overrides: Any) -> dict[str, Any]:
    """The guide's GitLab setup, pointed at ``fake``."""
    return {"base_url": fake.base_url, "token": fake.token, "project_id": GUIDE_PROJECT,
            "auto_create_mrs": True, "mr_target_branch": "main",
            "pipeline_triggers": {"config-deploy": "config-deployment"}, **overrides}
