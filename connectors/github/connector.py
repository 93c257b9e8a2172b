"""GitHubConnector: issues in config-tracking, workflow dispatches in infrastructure.

Each object is created at most once per event (``create_once``): an issue is found again by its
fingerprint label ``apgcfg-<event_id>``, a dispatch by the run whose title carries the event id.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from config_core.errors import ConfigError
from connectors import http
from connectors.base import BaseConnector
from connectors.errors import ConnectorError, Skipped, TransportError, Unavailable
from connectors.github.api import api_headers, json_body, raise_for
from connectors.github.config import (
    DEPLOY,
    INFRASTRUCTURE,
    SETTINGS,
    TRACKING,
    config_problem,
    repository,
    workflow_id,
)
from connectors.github.payloads import (
    dispatch_payload,
    fingerprint,
    issue_payload,
    run_matches,
    runs_query,
    skip_reason,
    steps,
)


class GitHubConnector(BaseConnector):
    """Opens an issue per change and dispatches the deploy workflow, as configured."""

    name = "github"
    rate_limit = "1/s"
    rate_limit_source = "writes at least 1 s apart; about 80 content-creating requests a minute"
    settings = SETTINGS

    @classmethod
    def validate_config(cls, config: Any, *, partial: bool = False) -> dict[str, Any]:
        """The declared checks, then (for a whole config) the ones between settings."""
        checked = super().validate_config(config, partial=partial)
        problem = None if partial else config_problem(checked)
        if problem:
            raise ConfigError(f"integrations.{cls.name}.{problem}")
        return checked

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Open the issue and/or dispatch the workflow; ``Skipped`` when neither applies."""
        todo = steps(event, self.config)
        if not todo:
            raise Skipped(skip_reason(event, self.config))
        result: dict[str, Any] = {}
        if "issue" in todo:
            result.update(self.open_issue(event))
        if "dispatch" in todo:
            result.update(self.dispatch_deploy(event))
        return result

    def open_issue(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event's issue in config-tracking, created once (found by its label)."""
        repo = repository(self.config, TRACKING)
        payload, label = issue_payload(event, self.config), fingerprint(event)
        return self.create_once("issue", lambda: self._create_issue(repo, payload),
                                lambda: self._find_issue(repo, label))

    def dispatch_deploy(self, event: dict[str, Any]) -> dict[str, Any]:
        """Dispatch ``workflow_triggers["deploy"]`` once (found by the run's title)."""
        repo = repository(self.config, INFRASTRUCTURE)
        workflow = workflow_id(self.config["workflow_triggers"][DEPLOY]) or ""
        payload = dispatch_payload(event, self.config)
        return self.create_once("dispatch", lambda: self._dispatch(repo, workflow, payload),
                                lambda: self._find_run(repo, workflow, event))

    def health_check(self) -> bool:
        """True when ``GET /rate_limit`` answers 200 with this token (costs no quota)."""
        try:
            response = self._send("GET", "/rate_limit")
        except ConnectorError:
            return False
        return response.status_code == 200

    # vendor calls ---------------------------------------------------------------------------

    def _create_issue(self, repo: str, payload: dict[str, Any]) -> dict[str, Any]:
        issue = json_body(self._create(f"/repos/{repo}/issues", payload,
                                       f"repository {repo}")) or {}
        return {"issue_repository": repo, "issue_number": issue.get("number"),
                "issue_url": issue.get("html_url")}

    def _find_issue(self, repo: str, label: str) -> dict[str, Any] | None:
        query = {"labels": label, "state": "all", "per_page": "100"}
        found = json_body(self._call("GET", f"/repos/{repo}/issues", f"repository {repo}",
                                     params=query))
        for issue in found if isinstance(found, list) else []:
            if "pull_request" not in issue:
                return {"issue_repository": repo, "issue_number": issue.get("number"),
                        "issue_url": issue.get("html_url")}
        return None

    def _dispatch(self, repo: str, workflow: str, payload: dict[str, Any]) -> dict[str, Any]:
        path = f"/repos/{repo}/actions/workflows/{quote(workflow, safe='')}/dispatches"
        self._create(path, payload, f"workflow {workflow} in {repo}")
        return {"workflow_repository": repo, "workflow": workflow, "workflow_ref": payload["ref"]}

    def _find_run(self, repo: str, workflow: str, event: dict[str, Any]) -> dict[str, Any] | None:
        path = f"/repos/{repo}/actions/workflows/{quote(workflow, safe='')}/runs"
        found = json_body(self._call("GET", path, f"workflow {workflow} in {repo}",
                                     params=runs_query(event)))
        runs = found.get("workflow_runs") if isinstance(found, dict) else None
        for run in runs if isinstance(runs, list) else []:
            if run_matches(run, str(event["event_id"])):
                return {"workflow_repository": repo, "workflow": workflow,
                        "workflow_ref": run.get("head_branch"), "workflow_run_id": run.get("id"),
                        "workflow_run_url": run.get("html_url")}
        return None

    def _create(self, path: str, payload: dict[str, Any], target: str) -> requests.Response:
        """POST that creates something. A 5xx leaves the outcome unknown (GitHub may have
        created it before failing), so it is raised like a timeout: the next attempt looks."""
        try:
            return self._call("POST", path, target, json=payload)
        except Unavailable as exc:
            raise TransportError(str(exc), status=exc.status,
                                 retry_after_s=exc.retry_after_s) from exc

    def _call(self, method: str, path: str, target: str, **kwargs: Any) -> requests.Response:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise_for(response, target=target, secrets=self.secrets())
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = str(self.config["api_url"]).rstrip("/") + path
        return http.send(method, url, secrets=self.secrets(),
                         headers=api_headers(str(self.config["token"])), **kwargs)
