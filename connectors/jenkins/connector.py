"""Jenkins: a parameterized build per matching change, followed to its result without waiting.

``send_notification`` POSTs ``buildWithParameters`` (once per event: the event id travels as the
``APGCFG_EVENT_ID`` parameter and finds an earlier attempt's build) and schedules a follow-up.
Each ``follow_up`` step makes one or two GETs: queue item → build → result; while the build is
not done it returns the next step, so no worker slot is held. The result is noted on the
event's ledger and the key's history, and emitted as a ``deployment.finished`` event.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests

from connectors import http
from connectors.base import BaseConnector
from connectors.context import FollowUp
from connectors.errors import ConnectorError, PermanentError, Rejected, Skipped
from connectors.jenkins.payload import (
    NOT_PARAMETERIZED,
    api_url,
    build_parameters,
    carrying,
    check_job,
    check_job_parameters,
    check_not_blank,
    check_positive,
    is_queue_item,
    jenkins_message,
    job_path,
    on_server,
    skip_reason,
)
from connectors.settings import Setting, http_url, list_of_str

DEFAULT_POLL_INTERVAL_S = 10
"""Seconds between two checks of a triggered build."""

DEFAULT_BUILD_TIMEOUT_S = 3600
"""Seconds after the trigger when following stops and the result is noted as unknown."""

FINISHED_EVENT = "deployment.finished"
"""Event emitted when a triggered build has a result (routed like any other event)."""

UNKNOWN = "unknown"
"""Noted result when the build could not be followed to its end."""

CANCELLED = "CANCELLED"
"""Result of a build whose queue item was cancelled before it started."""

QUEUE_TREE = "items[id,url,actions[parameters[name,value]]]"
BUILDS_TREE = "builds[number,url,actions[parameters[name,value]]]"
BUILD_TREE = "number,url,building,result,duration"
"""``tree`` filters of the look-ups (Jenkins returns only these fields)."""


class JenkinsConnector(BaseConnector):
    """Triggers ``default_job`` with the change as parameters and feeds the result back."""

    name = "jenkins"
    rate_limit_source = "none built in (a reverse proxy in front may limit)"
    settings = (
        Setting("base_url", required=True, check=http_url,
                doc="Jenkins root URL (self-hosted server, or a test fake)."),
        Setting("username", required=True, check=check_not_blank,
                doc="User the API token belongs to."),
        Setting("api_token", required=True, secret=True,
                doc="API token of ``username`` (basic auth; exempt from CSRF crumbs)."),
        Setting("default_job", required=True, check=check_job,
                doc='Job to build; a job in folders is "folder/job".'),
        Setting("trigger_patterns", kind=list, required=True, check=list_of_str,
                doc="Key globs that trigger a build; changes of other keys are skipped."),
        Setting("job_parameters", kind=dict, check=check_job_parameters,
                doc="Extra string parameters sent with every build."),
        Setting("poll_interval_s", kind=(int, float), default=DEFAULT_POLL_INTERVAL_S,
                check=check_positive, doc="Seconds between checks of a triggered build."),
        Setting("build_timeout_s", kind=(int, float), default=DEFAULT_BUILD_TIMEOUT_S,
                check=check_positive,
                doc='Stop following a build after this long; its result is noted "unknown".'),
    )

    # delivery ------------------------------------------------------------------------------

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Trigger the job once for this event and schedule the checks of its progress."""
        reason = skip_reason(event, self.config)
        if reason:
            raise Skipped(reason)
        self._claim_newest(event)
        event_id = str(event["event_id"])
        ref = self.create_once("build", lambda: self._trigger(event),
                               lambda: self._find(event_id))
        self.create_once("follow", lambda: self._follow_later(ref), lambda: None)
        return ref

    def _claim_newest(self, event: dict[str, Any]) -> None:
        """Refuse to start a build for a version older than one already triggered."""
        record = self.context.created("build")
        if record and record["state"] == "created":
            return  # this event's build exists: finishing its delivery starts nothing
        key = str(event["key"])
        newer = self.context.claim_newest(key, int(event.get("version") or 0))
        if newer is not None:
            raise Skipped(f"stale: version {newer} of {key} was already triggered")

    def _trigger(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST the form-encoded parameters; Jenkins answers 201 with the queue item's URL."""
        job = str(self.config["default_job"])
        response = self._call("POST", self._job_url("buildWithParameters"),
                              not_found=f"no job {job!r} at {job_path(job)}",
                              data=build_parameters(event, self.config), accept_redirect=True)
        location = response.headers.get("Location") or ""
        return self._ref(on_server(self._base, location) if is_queue_item(location) else None)

    def _find(self, event_id: str) -> dict[str, Any] | None:
        """An earlier attempt's queue item or build for ``event_id`` (queue first: no race)."""
        queue = self._json(api_url(f"{self._base}/queue", QUEUE_TREE))
        item = carrying(queue.get("items") or [], event_id)
        if item is not None:
            return self._ref(on_server(self._base, str(item["url"])))
        build = self._find_build(event_id)
        return None if build is None else self._ref(None, **build)

    def _ref(self, queue_url: str | None, **build: Any) -> dict[str, Any]:
        """What the dedupe record and the ledger keep of a triggered build."""
        return {"job": self.config["default_job"], "queue_url": queue_url, **build,
                "triggered_at": time.time()}

    def _find_build(self, event_id: str) -> dict[str, Any] | None:
        """The job's build whose parameters carry ``event_id``, as ``build_url``/``number``."""
        job = self._json(api_url(self._job_url(), BUILDS_TREE))
        build = carrying(job.get("builds") or [], event_id)
        if build is None:
            return None
        return {"build_url": on_server(self._base, str(build["url"])),
                "build_number": build.get("number")}

    def _follow_later(self, ref: dict[str, Any]) -> dict[str, Any]:
        state = {"queue_url": ref.get("queue_url"), "build_url": ref.get("build_url"),
                 "build_number": ref.get("build_number"), "started_at": ref["triggered_at"]}
        self.context.follow_up(state, float(self.config["poll_interval_s"]))
        return {"scheduled": True}

    # follow-up -----------------------------------------------------------------------------

    def follow_up(self, state: dict[str, Any]) -> FollowUp | None:
        """One check of the triggered build; the next step, or None once the result is noted."""
        try:
            return self._follow(state)
        except PermanentError as exc:  # 401, the job or queue item gone: retrying cannot help
            self._finish(state, UNKNOWN, error=str(exc))
            return None

    def follow_up_failed(self, state: dict[str, Any], error: str) -> None:
        """The build could not be followed to its end: its result is noted as UNKNOWN."""
        self._finish(state, UNKNOWN, error=f"could not follow the build: {error}")

    def _follow(self, state: dict[str, Any]) -> FollowUp | None:
        if time.time() - float(state.get("started_at") or 0) > self.config["build_timeout_s"]:
            self._finish(state, UNKNOWN, error="no result within build_timeout_s "
                         f"({self.config['build_timeout_s']} s)")
            return None
        if not state.get("build_url"):
            located = self._locate_build(state)
            if not isinstance(located, dict):
                return located
            state = {**state, **located}
        build = self._json(api_url(on_server(self._base, state["build_url"]), BUILD_TREE))
        if build.get("building") or build.get("result") is None:
            return self._again(state)
        self._finish(state, str(build["result"]), duration_ms=build.get("duration"))
        return None

    def _locate_build(self, state: dict[str, Any]) -> dict[str, Any] | FollowUp | None:
        """The build once the queue item left the queue; else the next step (or the end)."""
        item = self._queue_item(state)
        if item is not None and item.get("cancelled"):
            self._finish(state, CANCELLED, error="the queue item was cancelled")
            return None
        if item is not None:
            executable = item.get("executable") or {}
            if not executable.get("url"):
                return self._again(state)  # still waiting in the queue
            return {"build_url": on_server(self._base, str(executable["url"])),
                    "build_number": executable.get("number")}
        found = self._find_build(self.context.event_id)
        if found is not None:
            return found
        if state.get("queue_url"):
            self._finish(state, UNKNOWN, error="the queue item is gone and no build carries "
                         "the event id (is APGCFG_EVENT_ID a job parameter?)")
            return None
        return self._again(state)

    def _queue_item(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """The queue item's JSON; None without a queue URL or once Jenkins forgot it (404)."""
        if not state.get("queue_url"):
            return None
        try:
            return self._json(api_url(on_server(self._base, state["queue_url"])))
        except Rejected as exc:
            if exc.status == 404:
                return None
            raise

    def _again(self, state: dict[str, Any]) -> FollowUp:
        return FollowUp(state, float(self.config["poll_interval_s"]))

    def _finish(self, state: dict[str, Any], result: str, *, duration_ms: Any = None,
                error: str | None = None) -> None:
        """Note the result on the ledger and history and emit ``deployment.finished``, once."""
        build = {"number": state.get("build_number"), "url": state.get("build_url"),
                 "result": result, "duration_ms": duration_ms}
        if error:
            build["error"] = self.redact(error)

        def record() -> dict[str, Any]:
            note: dict[str, Any] = {"build": build}
            if result != UNKNOWN:
                note["finished_event_id"] = self.context.emit(FINISHED_EVENT, {
                    "build_number": build["number"], "build_url": build["url"],
                    "result": result, "job": self.config["default_job"]})
            self.context.add_note(note)
            return note

        self.create_once("finished", record, lambda: None)

    # HTTP ----------------------------------------------------------------------------------

    def health_check(self) -> bool:
        """True when Jenkins answers its root API with 200 for these credentials."""
        try:
            response = http.send("GET", api_url(self._base), secrets=self.secrets(),
                                 auth=self._auth)
        except ConnectorError:
            return False
        return response.status_code == 200

    @property
    def _base(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    @property
    def _auth(self) -> tuple[str, str]:
        return str(self.config["username"]), str(self.config["api_token"])

    def _job_url(self, action: str = "") -> str:
        url = self._base + job_path(str(self.config["default_job"]))
        return f"{url}/{action}" if action else url

    def _json(self, url: str) -> dict[str, Any]:
        try:
            body = self._call("GET", url).json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _call(self, method: str, url: str, *, not_found: str = "",
              **kwargs: Any) -> requests.Response:
        """One call with basic auth; a failure becomes the typed error with Jenkins' text."""
        secrets = self.secrets()
        response = http.send(method, url, secrets=secrets, auth=self._auth, **kwargs)
        if response.status_code < 400:
            return response
        message = jenkins_message(response.text or "")
        if response.status_code == 404:
            where = not_found or f"{method} {urlsplit(url).path}"
            message = f"{where} ({message or 'Not Found'})"
        if response.status_code >= 500 and NOT_PARAMETERIZED in (message or ""):
            raise Rejected(self.redact(f"jenkins answered {response.status_code}: {message}; "
                                       "declare the job's string parameters"),
                           status=response.status_code)
        return http.check(response, vendor="jenkins", message=message, secrets=secrets)
