"""GitLabConnector: a commit + merge request per changed key, and pipelines per change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from connectors.base import BaseConnector
from connectors.errors import ConnectorError, Rejected, Skipped, TransportError, Unavailable
from connectors.gitlab import payloads
from connectors.gitlab.api import GitLabApi, json_body, raise_for
from connectors.settings import Setting, http_url

DEFAULT_BASE_URL = "https://gitlab.com"
"""GitLab.com; set ``base_url`` for a self-managed server."""

BRANCH_EXISTS = "already exists. Switch to that branch"
"""GitLab's commit error when ``branch`` exists and ``start_branch`` differs."""

_PROJECT_PATH = re.compile(r"^[\w.-]+(/[\w.-]+)+$")


@contextmanager
def outcome_unknown_on_5xx() -> Iterator[None]:
    """A 5xx answer to a create leaves its outcome unknown (GitLab may have acted before the
    error): report it as a transport failure, so the next attempt looks before creating."""
    try:
        yield
    except Unavailable as exc:
        raise TransportError(str(exc), status=exc.status,
                             retry_after_s=exc.retry_after_s) from exc


def check_project(value: int | str) -> str | None:
    """A positive numeric id, or a ``group[/subgroup]/project`` path."""
    if isinstance(value, int):
        return None if value > 0 else "must be a positive project id"
    if value.isdigit() or _PROJECT_PATH.match(value):
        return None
    return 'must be a numeric project id or a "group/project" path'


def check_ref(value: str) -> str | None:
    return payloads.check_ref(value)


def check_prefix(value: str) -> str | None:
    """Empty, or a prefix that makes a valid branch name (``apgcfg/``)."""
    return payloads.check_ref(value + "x") if value else None


def check_triggers(value: dict[str, Any]) -> str | None:
    """Trigger name → branch or tag name to run the pipeline on."""
    for name, ref in value.items():
        if not name or not isinstance(ref, str):
            return f"[{name!r}] must map a name to a branch or tag name"
        problem = payloads.check_ref(ref)
        if problem:
            return f"[{name!r}] {problem}"
    return None


class GitLabConnector(BaseConnector):
    """Commits each changed key on its own branch, opens a merge request, starts pipelines."""

    name = "gitlab"
    rate_limit = "20/m"
    rate_limit_source = "pipeline creation about 25 a minute on GitLab.com"
    settings = (
        Setting("base_url", default=DEFAULT_BASE_URL, check=http_url,
                doc="GitLab server (GitLab.com or self-managed); `/api/v4` is added."),
        Setting("token", required=True, secret=True,
                doc="Personal, project or group access token with the `api` scope, sent as "
                    "`PRIVATE-TOKEN`."),
        Setting("project_id", kind=(int, str), required=True, check=check_project,
                doc='Numeric project id or `"group/project"` path (URL-encoded in API URLs).'),
        Setting("auto_create_mrs", kind=bool, default=False,
                doc="Commit each changed key to `config/<environment>/<key>.json` on a new "
                    "branch and open a merge request."),
        Setting("mr_target_branch", default="main", check=check_ref,
                doc="Branch the commit starts from and the merge request targets."),
        Setting("pipeline_triggers", kind=dict, check=check_triggers,
                doc="Name → branch/tag: start a pipeline there per change, with the change as "
                    "`CONFIG_*` variables."),
        Setting("trigger_token", secret=True,
                doc="Pipeline trigger token: pipelines start through `/trigger/pipeline`; "
                    "without one, through `/pipeline` with `token`."),
        Setting("branch_prefix", default="apgcfg/", check=check_prefix,
                doc="Prefix of the branch each merge request comes from."),
    )

    def api(self) -> GitLabApi:
        return GitLabApi(self.config, self.secrets())

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Do what ``payloads.plan`` asks; every created object goes through ``create_once``."""
        work = payloads.plan(event, self.config)
        api = self.api()
        done: dict[str, Any] = {}
        if work.merge_request:
            done.update(self._merge_request(api, event))
        pipelines = {name: self._pipeline(api, event, name, ref) for name, ref in work.pipelines}
        if pipelines:
            done["pipelines"] = {name: ref.get("id") for name, ref in pipelines.items()}
        if not done.get("merge_request_iid") and not pipelines:
            raise Skipped(str(done.get("note") or "nothing to do"))
        return done

    def health_check(self) -> bool:
        """True when the project answers 200 with this token."""
        try:
            self.api().project()
        except ConnectorError:
            return False
        return True

    # merge request ------------------------------------------------------------------------------

    def _merge_request(self, api: GitLabApi, event: dict[str, Any]) -> dict[str, Any]:
        branch = payloads.branch_name(event, self.config)
        commit = self.create_once("commit", lambda: self._commit(api, event, branch),
                                  lambda: _branch_ref(api.branch(branch), branch))
        if not commit.get("commit"):
            return {"note": commit.get("note")}
        mr = self.create_once("merge_request", lambda: self._open(api, event, branch),
                              lambda: _mr_ref(api.merge_requests(branch)))
        return {"branch": branch, "commit": commit["commit"],
                "merge_request_iid": mr["iid"], "merge_request_url": mr.get("web_url")}

    def _commit(self, api: GitLabApi, event: dict[str, Any], branch: str) -> dict[str, Any]:
        """Commit the key's file on the event's new branch; a branch that already exists was
        made by an earlier attempt for this event (its name carries the event id): adopt it."""
        target, path = self.config["mr_target_branch"], payloads.file_path(event)
        action = payloads.commit_action(event, api.file_exists(path, target))
        if action is None:
            return {"commit": None, "note": f"{path} is not on {target}: nothing to delete"}
        try:
            with outcome_unknown_on_5xx():
                commit = api.create_commit(payloads.commit_body(event, self.config, action))
        except Rejected as exc:
            found = _branch_ref(api.branch(branch), branch) if BRANCH_EXISTS in str(exc) else None
            if found is None:
                raise
            return found
        return {"commit": commit.get("id"), "action": action, "web_url": commit.get("web_url")}

    def _open(self, api: GitLabApi, event: dict[str, Any], branch: str) -> dict[str, Any]:
        """Open the merge request; a 409 (one is already open for the branch) adopts it."""
        with outcome_unknown_on_5xx():
            response = api.create_merge_request(payloads.merge_request_body(event, self.config))
        if response.status_code != 409:
            return _mr_fields(json_body(response))
        adopted = _mr_ref(api.merge_requests(branch))
        if adopted is None:
            raise_for(response, self.secrets())  # a 409 with nothing to adopt: GitLab's text
        return adopted

    # pipelines ----------------------------------------------------------------------------------

    def _pipeline(self, api: GitLabApi, event: dict[str, Any], name: str,
                  ref: str) -> dict[str, Any]:
        def start() -> dict[str, Any]:
            token = self.config.get("trigger_token")
            with outcome_unknown_on_5xx():
                if token:
                    return _pipeline_fields(api.trigger_pipeline(
                        payloads.trigger_form(event, name, ref, str(token))))
                return _pipeline_fields(api.create_pipeline(
                    payloads.api_pipeline_body(event, name, ref)))

        return self.create_once(f"pipeline:{name}", start,
                                lambda: self._find_pipeline(api, event, name, ref))

    def _find_pipeline(self, api: GitLabApi, event: dict[str, Any], name: str,
                       ref: str) -> dict[str, Any] | None:
        """The pipeline on ``ref`` whose variables carry this event's id and trigger name."""
        source = "trigger" if self.config.get("trigger_token") else "api"
        for pipeline in api.pipelines(ref, source):
            variables = api.pipeline_variables(pipeline.get("id"))
            if (variables.get("CONFIG_EVENT_ID") == event.get("event_id")
                    and variables.get("CONFIG_TRIGGER") == name):
                return _pipeline_fields(pipeline)
        return None


def _branch_ref(branch: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """The commit an earlier attempt made: the head of the event's own branch, if it exists."""
    if branch is None:
        return None
    commit = branch.get("commit") or {}
    return {"commit": commit.get("id"), "web_url": commit.get("web_url"), "branch": name}


def _mr_ref(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    return _mr_fields(found[0]) if found else None


def _mr_fields(mr: dict[str, Any]) -> dict[str, Any]:
    return {"iid": mr.get("iid"), "id": mr.get("id"), "web_url": mr.get("web_url"),
            "state": mr.get("state")}


def _pipeline_fields(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {"id": pipeline.get("id"), "ref": pipeline.get("ref"),
            "web_url": pipeline.get("web_url")}
