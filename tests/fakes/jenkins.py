"""Loopback fake of the Jenkins remote access API that enforces its contract.

Routes (every one needs HTTP basic auth with the fake's user and API token: a wrong token gets
Jenkins' 401 "Invalid password/token for user: <name>", no credentials its 403):

    GET  /api/json                                   the root (health check)
    POST /job/<a>/job/<b>/buildWithParameters        201, Location: <base>/queue/item/<n>/
    GET  /job/<a>/job/<b>/api/json                   the job, with builds and their parameters
    GET  /job/<a>/job/<b>/<n>/api/json               a build: building, result, duration
    GET  /queue/api/json                             the waiting items with their parameters
    GET  /queue/item/<n>/api/json                    one item: waiting, left (executable), cancelled

Jenkins' own behaviour is kept: parameters are read from the query string and a form-encoded
body only (a JSON body is ignored, as Jenkins ignores it); only parameters the job defines reach
the build (others are dropped, defaults fill the rest); a job without parameters answers 500
"This build is not parameterized!"; a disabled job 409; an unknown job or folder 404; a waiting
item with identical parameters is not queued twice (303 to it). A queue item leaves the queue
after ``queue_polls`` GETs of it (or ``queue_s`` seconds); its build then answers ``building``
for ``build_polls`` GETs and finishes with ``result``.
"""

from __future__ import annotations

import base64
import html
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

JENKINS_VERSION = "2.462.3"
"""Sent as ``X-Jenkins`` on every answer, as Jenkins does."""

DEFAULT_JOB = "config-deployment"
DEFAULT_PARAMETERS = {"CONFIG_KEY": "", "CONFIG_VALUE": "", "USER_ID": "",
                      "APGCFG_EVENT_ID": "", "ENVIRONMENT": "staging", "NOTIFY_TEAM": ""}
"""The guide's pipeline parameters, the connector's fingerprint and the guide's extras."""

FIRST_QUEUE_ID = 100
"""Queue ids start here, so they are never mistaken for build numbers."""

JOB_PATH_RE = r"((?:/job/[^/]+)+)"
ROUTES = [
    ("GET", re.compile(r"^/api/json$"), "_get_root"),
    ("GET", re.compile(r"^/queue/api/json$"), "_get_queue"),
    ("GET", re.compile(r"^/queue/item/(\d+)/api/json$"), "_get_queue_item"),
    ("POST", re.compile(rf"^{JOB_PATH_RE}/buildWithParameters$"), "_post_build_with_parameters"),
    ("GET", re.compile(rf"^{JOB_PATH_RE}/api/json$"), "_get_job"),
    ("GET", re.compile(rf"^{JOB_PATH_RE}/(\d+)/api/json$"), "_get_build"),
]
"""Method, path pattern, handler: the remote API the connector uses."""

FORM_TYPE = "application/x-www-form-urlencoded"
PARAMETERS_CLASS = "hudson.model.ParametersAction"


def error_page(status: int, message: str, uri: str = "") -> Reply:
    """Jetty's error page, as Jenkins serves it for 401, 404, 405, 409..."""
    text = html.escape(message)
    body = (f'<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>'
            f"\n<title>Error {status} {text}</title>\n</head>\n<body>\n"
            f"<h2>HTTP ERROR {status} {text}</h2>\n<table>\n"
            f"<tr><th>URI:</th><td>{html.escape(uri)}</td></tr>\n"
            f"<tr><th>STATUS:</th><td>{status}</td></tr>\n"
            f"<tr><th>MESSAGE:</th><td>{text}</td></tr>\n"
            "<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n</body>\n</html>\n")
    return Reply(status, body.encode(), {"Content-Type": "text/html;charset=utf-8",
                                         "X-Jenkins": JENKINS_VERSION})


def oops_page(exception: str) -> Reply:
    """Jenkins' 500 page for an uncaught exception, with its stack trace."""
    body = ("<!DOCTYPE html><html><head><title>Jenkins</title></head><body>"
            "<h1>Oops!</h1><p>A problem occurred while processing the request.</p>"
            f"<pre>{html.escape(exception)}\n\tat jenkins.model.ParameterizedJobMixIn"
            ".doBuildWithParameters(ParameterizedJobMixIn.java:196)</pre></body></html>")
    return Reply(500, body.encode(), {"Content-Type": "text/html;charset=utf-8",
                                      "X-Jenkins": JENKINS_VERSION})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _parameters_action(parameters: dict[str, str]) -> dict[str, Any]:
    return {"_class": PARAMETERS_CLASS, "parameters": [
        {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
        for k, v in parameters.items()]}


@dataclass
class Build:
    """One build of a job."""

    number: int
    job: str
    parameters: dict[str, str]
    queue_id: int
    started_at: float = field(default_factory=time.time)
    polls: int = 0
    result: str | None = None
    duration_ms: int = 0


@dataclass
class Job:
    """A job: its parameter definitions (None: not parameterized) and its builds."""

    full_name: str
    parameters: dict[str, str] | None
    buildable: bool = True
    result: str | None = None
    builds: list[Build] = field(default_factory=list)


@dataclass
class QueueItem:
    """A queued build request."""

    id: int
    job: str
    parameters: dict[str, str]
    queued_at: float = field(default_factory=time.time)
    polls: int = 0
    build: Build | None = None
    cancelled: bool = False
    forgotten: bool = False

    @property
    def waiting(self) -> bool:
        return self.build is None and not self.cancelled


class FakeJenkins(ServerBase):
    """Jenkins on 127.0.0.1: checks credentials, jobs and parameters; queues and runs builds."""

    def __init__(self, delay_s: float = 0.0, *, username: str = "automation",
                 api_token: str | None = None, queue_polls: int = 1, build_polls: int = 1,
                 queue_s: float | None = None, result: str = "SUCCESS") -> None:
        super().__init__(delay_s)
        self.username = username
        self.api_token = api_token or secrets.token_hex(17)
        self.queue_polls, self.build_polls, self.queue_s = queue_polls, build_polls, queue_s
        self.result = result
        self.trigger_delay_s = 0.0
        """Extra seconds before answering a ``buildWithParameters`` (after queuing it)."""
        self._jobs: dict[str, Job] = {}
        self._queue: dict[int, QueueItem] = {}

    # test controls --------------------------------------------------------------------------

    def add_job(self, full_name: str = DEFAULT_JOB,
                parameters: dict[str, str] | None = DEFAULT_PARAMETERS, *,
                buildable: bool = True, result: str | None = None) -> str:
        """Create a job (``folder/name`` for a job in folders) and return its full name."""
        with self._lock:
            self._jobs[full_name] = Job(full_name, None if parameters is None
                                        else dict(parameters), buildable, result)
        return full_name

    def config(self, job: str = DEFAULT_JOB, **overrides: Any) -> dict[str, Any]:
        """A connector config for this fake (the job is created if missing)."""
        if job not in self._jobs:
            self.add_job(job)
        return {"base_url": self.base_url, "username": self.username,
                "api_token": self.api_token, "default_job": job, "trigger_patterns": ["*"],
                **overrides}

    def cancel(self, queue_id: int) -> None:
        """Cancel a waiting queue item."""
        with self._lock:
            self._queue[queue_id].cancelled = True

    def forget_queue_item(self, queue_id: int) -> None:
        """Drop an item, as Jenkins does some minutes after it left the queue (404 from then)."""
        with self._lock:
            self._queue[queue_id].forgotten = True

    # observations ---------------------------------------------------------------------------

    def builds(self, job: str | None = None) -> list[Build]:
        """Every build started so far, oldest first, optionally of one job only."""
        with self._lock:
            found = [b for j in self._jobs.values() for b in j.builds]
        return sorted((b for b in found if job is None or b.job == job),
                      key=lambda b: (b.started_at, b.number))

    def queue_items(self) -> list[QueueItem]:
        """Every item ever queued (a trigger that Jenkins accepted), oldest first."""
        with self._lock:
            return sorted(self._queue.values(), key=lambda item: item.id)

    # ServerBase hooks -----------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """The job a URL or path names (so ``fail_next(webhook_url=...)`` targets one job)."""
        match = re.match(JOB_PATH_RE, urlsplit(url_or_path).path)
        return _full_name(match.group(1)) if match else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Jenkins' (or its reverse proxy's) own answer for a scripted failure."""
        if status == 401:
            return self._unauthorized("")
        if status == 429:
            reply = error_page(429, "Too Many Requests")
            wait = str(max(1, math.ceil(retry_after_s)))
            return Reply(429, reply.body, {**reply.headers, "Retry-After": wait})
        if status == 503:
            return error_page(503, "Service Unavailable: Jenkins is getting ready to work")
        return error_page(status, _phrase(status))

    def respond(self, request: RecordedRequest) -> Reply:
        """As ServerBase, plus ``trigger_delay_s`` after a trigger was handled."""
        reply = super().respond(request)
        if request.method == "POST" and request.path.endswith("/buildWithParameters"):
            self._stopping.wait(self.trigger_delay_s)
        return reply

    def handle(self, request: RecordedRequest) -> Reply:
        """Authenticate, route and answer one request."""
        refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        self._tick()
        allowed = []
        for method, pattern, name in ROUTES:
            match = pattern.match(request.path)
            if match and method == request.method:
                reply: Reply = getattr(self, name)(request, *match.groups())
                return reply
            if match:
                allowed.append(method)
        if allowed:
            return error_page(405, "Method Not Allowed", request.path)
        return error_page(404, "Not Found", request.path)

    # auth -----------------------------------------------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> Reply | None:
        header = request.header("Authorization") or ""
        if not header.startswith("Basic "):
            reply = error_page(403, "Authentication required", request.path)
            return Reply(403, reply.body, {**reply.headers,
                                           "X-You-Are-Authenticated-As": "anonymous"})
        try:
            user, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return error_page(401, "Malformed HTTP basic Authorization header", request.path)
        if user != self.username or not secrets.compare_digest(token, self.api_token):
            return self._unauthorized(request.path, user)
        return None

    def _unauthorized(self, uri: str, user: str | None = None) -> Reply:
        reply = error_page(401, f"Invalid password/token for user: {user or self.username}", uri)
        return Reply(401, reply.body, {**reply.headers,
                                       "WWW-Authenticate": 'Basic realm="Jenkins"'})

    # handlers -------------------------------------------------------------------------------

    def _get_root(self, request: RecordedRequest) -> Reply:
        with self._lock:
            jobs = [{"_class": "hudson.model.FreeStyleProject", "name": name,
                     "url": self._job_url(name), "color": "blue"} for name in self._jobs]
        return self._json({"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeName": "",
                           "numExecutors": 2, "jobs": jobs, "useCrumbs": True,
                           "useSecurity": True})

    def _post_build_with_parameters(self, request: RecordedRequest, path: str) -> Reply:
        name = _full_name(path)
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                return error_page(404, "Not Found", request.path)
            if not job.buildable:
                return error_page(409, f"java.io.IOException: {name} is not buildable!",
                                  request.path)
            if job.parameters is None:
                return oops_page("java.lang.IllegalStateException: "
                                 "This build is not parameterized!")
            values = _request_parameters(request)
            parameters = {k: values.get(k, default) for k, default in job.parameters.items()}
            twin = next((i for i in self._queue.values() if i.waiting and i.job == name
                         and i.parameters == parameters), None)
            if twin is not None:
                return Reply(303, b"", {"Location": self._item_url(twin.id),
                                        "X-Jenkins": JENKINS_VERSION})
            item = QueueItem(FIRST_QUEUE_ID + len(self._queue), name, parameters)
            self._queue[item.id] = item
        self.accept(name, {"job": name, "queue_id": item.id, "parameters": parameters})
        return Reply(201, b"", {"Location": self._item_url(item.id), "X-Jenkins": JENKINS_VERSION})

    def _get_queue(self, request: RecordedRequest) -> Reply:
        with self._lock:
            items = [self._item_json(i) for i in self._queue.values()
                     if i.waiting and not i.forgotten]
        return self._json({"_class": "hudson.model.Queue", "discoverableItems": [],
                           "items": items})

    def _get_queue_item(self, request: RecordedRequest, queue_id: str) -> Reply:
        with self._lock:
            item = self._queue.get(int(queue_id))
            if item is None or item.forgotten:
                return error_page(404, "Not Found", request.path)
            if item.waiting:
                if item.polls >= self.queue_polls:
                    self._start(item)
                else:
                    item.polls += 1
            return self._json(self._item_json(item))

    def _get_job(self, request: RecordedRequest, path: str) -> Reply:
        name = _full_name(path)
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                children = [n for n in self._jobs if n.startswith(name + "/")]
                if not children:
                    return error_page(404, "Not Found", request.path)
                return self._json({"_class": "com.cloudbees.hudson.plugins.folder.Folder",
                                   "name": name.rsplit("/", 1)[-1], "fullName": name,
                                   "url": self._job_url(name),
                                   "jobs": [{"name": n, "url": self._job_url(n)}
                                            for n in children]})
            return self._json(self._job_json(job))

    def _get_build(self, request: RecordedRequest, path: str, number: str) -> Reply:
        with self._lock:
            job = self._jobs.get(_full_name(path))
            build = next((b for b in job.builds if b.number == int(number)), None) \
                if job else None
            if job is None or build is None:
                return error_page(404, "Not Found", request.path)
            if build.result is None:
                if build.polls >= self.build_polls:
                    build.result = job.result or self.result
                    build.duration_ms = int((time.time() - build.started_at) * 1000)
                else:
                    build.polls += 1
            return self._json(self._build_json(build))

    # state ----------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Start every item that has waited ``queue_s`` seconds."""
        if self.queue_s is None:
            return
        now = time.time()
        with self._lock:
            for item in self._queue.values():
                if item.waiting and now - item.queued_at >= self.queue_s:
                    self._start(item)

    def _start(self, item: QueueItem) -> None:
        """Move ``item`` out of the queue into a new build of its job (lock held)."""
        job = self._jobs[item.job]
        number = max((b.number for b in job.builds), default=0) + 1
        item.build = Build(number, job.full_name, dict(item.parameters), item.id)
        job.builds.append(item.build)

    # JSON -----------------------------------------------------------------------------------

    def _json(self, payload: dict[str, Any]) -> Reply:
        return json_reply(200, payload, {"X-Jenkins": JENKINS_VERSION})

    def _job_url(self, name: str) -> str:
        return self.base_url + "".join(f"/job/{quote(s, safe='')}" for s in name.split("/")) + "/"

    def _item_url(self, queue_id: int) -> str:
        return f"{self.base_url}/queue/item/{queue_id}/"

    def _item_json(self, item: QueueItem) -> dict[str, Any]:
        common = {"actions": [_parameters_action(item.parameters)], "id": item.id,
                  "inQueueSince": int(item.queued_at * 1000),
                  "task": {"_class": "hudson.model.FreeStyleProject", "name": item.job,
                           "url": self._job_url(item.job)},
                  "url": f"queue/item/{item.id}/"}
        if item.waiting:
            return {"_class": "hudson.model.Queue$WaitingItem", **common, "blocked": False,
                    "buildable": False, "stuck": False,
                    "why": "In the quiet period. Expires in 4.9 sec"}
        executable = None if item.build is None else {
            "_class": "hudson.model.FreeStyleBuild", "number": item.build.number,
            "url": self._build_url(item.build)}
        return {"_class": "hudson.model.Queue$LeftItem", **common,
                "cancelled": item.cancelled, "executable": executable}

    def _build_url(self, build: Build) -> str:
        return f"{self._job_url(build.job)}{build.number}/"

    def _build_json(self, build: Build) -> dict[str, Any]:
        return {"_class": "hudson.model.FreeStyleBuild",
                "actions": [_parameters_action(build.parameters),
                            {"_class": "hudson.model.CauseAction"}],
                "building": build.result is None, "duration": build.duration_ms,
                "fullDisplayName": f"{build.job} #{build.number}", "id": str(build.number),
                "number": build.number, "queueId": build.queue_id, "result": build.result,
                "timestamp": int(build.started_at * 1000), "url": self._build_url(build)}

    def _job_json(self, job: Job) -> dict[str, Any]:
        builds = [{"_class": "hudson.model.FreeStyleBuild", "number": b.number,
                   "url": self._build_url(b), "actions": [_parameters_action(b.parameters)]}
                  for b in reversed(job.builds)]
        definitions = [{"_class": "hudson.model.StringParameterDefinition", "name": k,
                        "defaultParameterValue": {"name": k, "value": v}}
                       for k, v in (job.parameters or {}).items()]
        return {"_class": "hudson.model.FreeStyleProject", "name": job.full_name.split("/")[-1],
                "fullName": job.full_name, "url": self._job_url(job.full_name),
                "buildable": job.buildable, "builds": builds,
                "nextBuildNumber": len(job.builds) + 1,
                "property": [{"_class": "hudson.model.ParametersDefinitionProperty",
                              "parameterDefinitions": definitions}]}


def _full_name(path: str) -> str:
    """``/job/a/job/b`` → ``a/b``."""
    return "/".join(unquote(part) for part in path.split("/job/")[1:])


def _request_parameters(request: RecordedRequest) -> dict[str, str]:
    """What Jenkins' ``req.getParameter`` sees: the query string, then a form-encoded body."""
    values = dict(request.query)
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == FORM_TYPE and request.body:
        values.update(parse_qsl(request.body.decode(), keep_blank_values=True))
    return values
