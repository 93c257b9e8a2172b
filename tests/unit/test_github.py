"""GitHub connector: settings, pure payloads, error mapping, and create-once against the fake."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from config_core import ConfigError, ConfigService
from connectors import AuthError, RateLimited, Rejected, Skipped, TransportError, Unavailable
from connectors.context import MemoryContext
from connectors.github import GitHubConnector
from connectors.github.api import API_VERSION, MEDIA_TYPE, SECONDARY_WAIT_S, raise_for
from connectors.github.config import repository, workflow_id
from connectors.github.payloads import (
    BODY_LIMIT,
    DISPATCH_INPUTS,
    INPUT_VALUE_LIMIT,
    MAX_INPUTS,
    TITLE_LIMIT,
    dispatch_payload,
    issue_payload,
    run_matches,
    runs_query,
    skip_reason,
    steps,
)
from tests.fakes.github import FakeGitHub
from tests.unit.samples import make_event

TRACKING, INFRA = "company/config-tracking", "company/infrastructure"
RUN_NAME = "Deploy ${{ inputs.config_key }} [${{ inputs.event_id }}]"
EVENT_ID = "ab" * 16


def guide_config(**overrides: Any) -> dict[str, Any]:
    """The guide's example config."""
    config = {
        "token": "ghp_your-github-token", "organization": "company",
        "repositories": {"config-tracking": TRACKING, "infrastructure": INFRA},
        "auto_create_issues": True, "issue_labels": ["configuration", "automated"],
        "workflow_triggers": {"deploy": ".github/workflows/deploy-config.yml"},
    }
    config.update(overrides)
    return config


@pytest.fixture
def github_fake() -> Iterator[FakeGitHub]:
    """A started FakeGitHub holding the guide's two repositories and its deploy workflow."""
    with FakeGitHub() as fake:
        fake.add_repo(TRACKING)
        fake.add_repo(INFRA)
        fake.add_workflow(INFRA, inputs={name: name == "event_id" for name in DISPATCH_INPUTS},
                          run_name=RUN_NAME)
        yield fake


def connector_for(fake: FakeGitHub, **overrides: Any) -> GitHubConnector:
    config = guide_config(token=fake.token, api_url=fake.base_url, **overrides)
    GitHubConnector.validate_config(config)
    connector = GitHubConnector.from_stored("github", config)
    assert isinstance(connector, GitHubConnector)
    return connector


def response(status: int, body: Any = None, headers: dict[str, str] | None = None,
             ) -> requests.Response:
    reply = requests.Response()
    reply.status_code = status
    reply._content = json.dumps(body).encode() if body is not None else b""
    reply.headers.update(headers or {})
    return reply


# settings -----------------------------------------------------------------------------------


def test_validate_config__guide_example__accepted_with_defaults() -> None:
    # Given the guide's config / When validated / Then defaults fill api_url and workflow_ref
    checked = GitHubConnector.validate_config(guide_config())
    assert checked["api_url"] == "https://api.github.com"
    assert checked["workflow_ref"] == "main"
    assert GitHubConnector.secret_fields() == {"token"}


@pytest.mark.parametrize("repo", ["company/infra/extra", "-company/infra", "company/", "a b/c",
                                  "company/.."])
def test_validate_config__repository_not_owner_repo__error_names_field(repo: str) -> None:
    # Given a repository that is not owner/repo / Then the error names the setting and entry
    with pytest.raises(ConfigError,
                       match=r"integrations\.github\.repositories entry 'infrastructure' must"):
        GitHubConnector.validate_config(
            guide_config(repositories={"config-tracking": TRACKING, "infrastructure": repo}))


def test_validate_config__unknown_repository_role__error_lists_known() -> None:
    with pytest.raises(ConfigError, match=r"unknown entry 'config_tracking'.*config-tracking"):
        GitHubConnector.validate_config(guide_config(repositories={"config_tracking": TRACKING}))


def test_validate_config__issues_without_tracking_repo__refused() -> None:
    with pytest.raises(ConfigError, match=r"repositories needs a 'config-tracking' entry"):
        GitHubConnector.validate_config(guide_config(repositories={"infrastructure": INFRA}))


def test_validate_config__deploy_without_infrastructure_repo__refused() -> None:
    with pytest.raises(ConfigError, match=r"repositories needs an 'infrastructure' entry"):
        GitHubConnector.validate_config(guide_config(repositories={"config-tracking": TRACKING}))


def test_validate_config__field_by_field__cross_checks_wait_for_the_whole_config() -> None:
    # Given a config being built field by field / Then only the fields themselves are checked
    GitHubConnector.validate_config({"auto_create_issues": True}, partial=True)
    with pytest.raises(ConfigError, match=r"integrations\.github\.auto_create_issues"):
        GitHubConnector.validate_config({"auto_create_issues": "yes"}, partial=True)


def test_validate_config__bare_repo_name__resolved_under_organization() -> None:
    # Given bare names / Then they need organization, and resolve under it
    bare = {"config-tracking": "config-tracking", "infrastructure": "infrastructure"}
    with pytest.raises(ConfigError, match=r"bare name; set organization"):
        GitHubConnector.validate_config(guide_config(organization=None, repositories=bare))
    checked = GitHubConnector.validate_config(guide_config(repositories=bare))
    assert repository(checked, "config-tracking") == "company/config-tracking"


@pytest.mark.parametrize(("given", "expected"), [
    (".github/workflows/deploy-config.yml", "deploy-config.yml"), ("deploy.yaml", "deploy.yaml"),
    (161335, "161335"), ("161335", "161335"), ("deploy", None), ("../x.yml", None),
    (".github/workflows/sub/x.yml", None), (0, None), (True, None)])
def test_workflow_id__trigger_forms__id_or_file_name(given: Any, expected: str | None) -> None:
    assert workflow_id(given) == expected
    if expected is None:
        with pytest.raises(ConfigError, match=r"workflow_triggers entry 'deploy' must"):
            GitHubConnector.validate_config(guide_config(workflow_triggers={"deploy": given}))


@pytest.mark.parametrize(("labels", "problem"), [(["x" * 51], "longer than GitHub's 50"),
                                                 (["a,b"], "without commas"), ([""], "non-empty")])
def test_validate_config__bad_issue_labels__refused(labels: list[str], problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"integrations\.github\.issue_labels .*{problem}"):
        GitHubConnector.validate_config(guide_config(issue_labels=labels))


def test_validate_config__plain_http_api_url__refused_unless_loopback() -> None:
    with pytest.raises(ConfigError, match=r"integrations\.github\.api_url must be an https"):
        GitHubConnector.validate_config(guide_config(api_url="http://ghe.example.com/api/v3"))
    GitHubConnector.validate_config(guide_config(api_url="https://ghe.example.com/api/v3"))


# payloads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "overrides", "expected"), [
    ("config.changed", {}, ["issue", "dispatch"]),
    ("config.deleted", {}, ["issue"]),
    ("config.error", {}, ["issue"]),
    ("security.violation", {}, []),
    ("config.changed", {"auto_create_issues": False}, ["dispatch"]),
    ("config.error", {"auto_create_issues": False}, []),
    ("config.changed", {"workflow_triggers": {}}, ["issue"]),
])
def test_steps__event_type_and_settings__issue_dispatch_or_nothing(
        event_type: str, overrides: dict[str, Any], expected: list[str]) -> None:
    assert steps(make_event(type=event_type), guide_config(**overrides)) == expected


def test_skip_reason__nothing_enabled__names_the_settings() -> None:
    config = guide_config(auto_create_issues=False, workflow_triggers={})
    assert "auto_create_issues is off" in skip_reason(make_event(), config)
    reason = skip_reason(make_event(type="config.error"), guide_config(auto_create_issues=False))
    assert "acts on config.changed" in reason


def test_issue_payload__change__title_labels_fingerprint_and_body() -> None:
    # Given the guide's change / When the issue is built
    payload = issue_payload(make_event(event_id=EVENT_ID, reason="database migration"),
                            guide_config())
    # Then the title names the key, labels end with the fingerprint, the body tells the change
    assert payload["title"] == "Configuration changed: app.database.host (production)"
    assert payload["labels"] == ["configuration", "automated", f"apgcfg-{EVENT_ID}"]
    body = payload["body"]
    for text in ("`app.database.host`", "`admin@company.com`", "`database migration`",
                 "2025-01-01 14:30:00 UTC", "### Old value\n```text\nlocalhost\n```",
                 "### New value\n```text\nprod-db.internal\n```", f"<!-- apgcfg-{EVENT_ID} -->"):
        assert text in body


def test_issue_body__mentions_and_backticks_in_values__kept_inside_code() -> None:
    # Given values that try to mention people and to break out of code
    event = make_event(changed_by="@octocat", reason="ping @org/team ``` done",
                       new_value="```\n@everyone\n```")
    body = issue_payload(event, guide_config())["body"]
    # Then each sits in a span or block fenced longer than any backtick run it holds
    assert "- **Changed by:** `@octocat`" in body
    assert "- **Reason:** ````ping @org/team ``` done````" in body
    assert "### New value\n````text\n```\n@everyone\n```\n````" in body


def test_issue_payload__huge_values_and_key__within_github_limits() -> None:
    event = make_event(key="k." + "x" * 400, old_value="o" * 100_000, new_value={"v": "n" * 10**5})
    payload = issue_payload(event, guide_config())
    assert len(payload["title"]) <= TITLE_LIMIT and payload["title"].endswith("…")
    assert len(payload["body"]) <= BODY_LIMIT and payload["body"].count("…") >= 2


def test_issue_payload__config_error__shows_error_and_refused_value() -> None:
    event = make_event(type="config.error", new_value={"port": "x"}, metadata={
        "error": "'x' is not of type 'integer'", "error_kind": "schema",
        "schema_pattern": "app.*"})
    payload = issue_payload(event, guide_config())
    assert payload["title"] == "Schema validation failed: app.database.host (production)"
    assert "### Error (schema)\n```text\n'x' is not of type 'integer'\n```" in payload["body"]
    assert "Schema pattern: `app.*`" in payload["body"]
    assert '### Refused value\n```json\n{\n  "port": "x"\n}\n```' in payload["body"]


def test_issue_payload__deleted__shows_last_value_only() -> None:
    body = issue_payload(make_event(type="config.deleted", new_value=None), guide_config())["body"]
    assert "### Last value\n```text\nlocalhost\n```" in body and "New value" not in body


def test_dispatch_payload__change__ref_and_string_inputs() -> None:
    # Given a change to a structured value, with no reason
    event = make_event(event_id=EVENT_ID, new_value={"hosts": ["a", "b"], "port": 5432})
    # When the dispatch body is built for a release branch
    payload = dispatch_payload(event, guide_config(workflow_ref="release/v2"))
    # Then the inputs are the documented names, all strings, the value JSON-encoded
    assert payload["ref"] == "release/v2"
    inputs = payload["inputs"]
    assert tuple(inputs) == DISPATCH_INPUTS and len(inputs) <= MAX_INPUTS
    assert all(isinstance(value, str) for value in inputs.values())
    assert inputs["config_value"] == '{"hosts":["a","b"],"port":5432}'
    assert (inputs["event_id"], inputs["version"], inputs["reason"]) == (EVENT_ID, "3", "")


@pytest.mark.parametrize(("value", "expected"), [(None, "null"), (True, "true"), (5, "5"),
                                                 ("text", "text")])
def test_dispatch_payload__scalar_values__json_unless_string(value: Any, expected: str) -> None:
    assert dispatch_payload(make_event(new_value=value), {})["inputs"]["config_value"] == expected


def test_dispatch_payload__huge_value__truncated() -> None:
    value = dispatch_payload(make_event(new_value="v" * 50_000), {})["inputs"]["config_value"]
    assert len(value) == INPUT_VALUE_LIMIT and value.endswith("…")


def test_runs_query__event__dispatch_runs_since_shortly_before_the_event() -> None:
    query = runs_query(make_event())
    assert query == {"event": "workflow_dispatch", "per_page": "100",
                     "created": ">=2025-01-01T14:25:00Z"}
    assert run_matches({"display_title": f"Deploy k [{EVENT_ID}]"}, EVENT_ID)
    assert not run_matches({"display_title": "Deploy configuration", "name": "Deploy"}, EVENT_ID)


# error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "headers", "error", "wait_s"), [
    (401, {"message": "Bad credentials"}, {}, AuthError, None),
    (403, {"message": "Resource not accessible by personal access token"}, {}, AuthError, None),
    (403, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0",
                                                   "x-ratelimit-reset": "+30"}, RateLimited, 31),
    (429, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0",
                                                   "x-ratelimit-reset": "+5"}, RateLimited, 6),
    (403, {"message": "You have exceeded a secondary rate limit."}, {"retry-after": "17"},
     RateLimited, 17),
    (403, {"message": "You have exceeded a secondary rate limit."}, {"x-ratelimit-remaining":
                                                                     "12"}, RateLimited, 60),
    (429, {"message": "Too many requests"}, {}, RateLimited, SECONDARY_WAIT_S),
    (404, {"message": "Not Found"}, {}, Rejected, None),
    (422, {"message": "Validation Failed", "errors": [
        {"resource": "Issue", "field": "title", "code": "missing_field"},
        {"message": "body is too long (maximum is 65536 characters)"}]}, {}, Rejected, None),
    (502, {"message": "Server Error"}, {}, Unavailable, None),
])
def test_raise_for__status_headers_and_body__typed_error_and_wait(
        status: int, body: dict[str, Any], headers: dict[str, str], error: type[Exception],
        wait_s: float | None) -> None:
    # Given a GitHub error reply (a reset written "+N" is N seconds from now)
    headers = {k: (str(int(time.time()) + int(v[1:])) if v.startswith("+") else v)
               for k, v in headers.items()}
    # When it is mapped
    with pytest.raises(error) as caught:
        raise_for(response(status, body, headers), target="repository a/b", secrets=())
    # Then the type, the wait and GitHub's own message are right
    assert body["message"] in str(caught.value)
    if wait_s is not None:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after_s == pytest.approx(wait_s, abs=1.5)
    if status == 404:
        assert "repository a/b" in str(caught.value)
    if status == 422:
        assert "Issue.title missing_field; body is too long" in str(caught.value)


# against the fake ---------------------------------------------------------------------------


def test_send__issue_and_deploy__one_of_each_with_github_headers(github_fake: FakeGitHub) -> None:
    # Given the guide's config against the fake
    connector = connector_for(github_fake)
    # When a change is sent
    result = connector.send_notification(make_event(event_id=EVENT_ID))
    # Then one issue and one dispatch exist, and every call carried GitHub's headers
    assert [i["labels"][-1] for i in github_fake.issues(TRACKING)] == [f"apgcfg-{EVENT_ID}"]
    assert [d["inputs"]["event_id"] for d in github_fake.dispatches(INFRA)] == [EVENT_ID]
    assert result["issue_number"] == 1 and result["workflow"] == "deploy-config.yml"
    for request in github_fake.requests:
        assert request.header("Accept") == MEDIA_TYPE
        assert request.header("X-GitHub-Api-Version") == API_VERSION
        assert request.header("Authorization") == f"Bearer {github_fake.token}"
    assert connector.context.created("issue") == {"state": "created", "ref": {
        "issue_repository": TRACKING, "issue_number": 1,
        "issue_url": f"https://github.com/{TRACKING}/issues/1"}}


def test_send__nothing_enabled__skipped_without_a_request(github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake, auto_create_issues=False, workflow_triggers={})
    with pytest.raises(Skipped, match="auto_create_issues is off"):
        connector.send_notification(make_event())
    assert github_fake.requests == []


def test_open_issue__earlier_attempt_unknown_and_issue_exists__found_not_recreated(
        github_fake: FakeGitHub) -> None:
    # Given an earlier attempt created the issue but its answer was lost
    event = make_event(event_id=EVENT_ID)
    connector_for(github_fake, workflow_triggers={}).send_notification(event)
    context = MemoryContext(event_id=EVENT_ID, connector="github")
    context.mark("issue", "creating")
    connector = connector_for(github_fake, workflow_triggers={})
    connector.context = context
    # When the retry runs
    ref = connector.open_issue(event)
    # Then it finds that issue by its label and creates none
    assert ref["issue_number"] == 1 and len(github_fake.issues()) == 1
    assert context.created("issue") == {"state": "created", "ref": ref}
    lookup = github_fake.requests[-1]
    assert (lookup.method, lookup.query["labels"], lookup.query["state"]) == (
        "GET", f"apgcfg-{EVENT_ID}", "all")


def test_open_issue__earlier_attempt_unknown_and_nothing_there__created(
        github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake)
    connector.context.mark("issue", "creating")
    connector.open_issue(make_event(event_id=EVENT_ID))
    assert [r.method for r in github_fake.requests] == ["GET", "POST"]
    assert len(github_fake.issues()) == 1


def test_send__both_steps_created_before__no_request(github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake)
    connector.context.mark("issue", "created", {"issue_number": 7})
    connector.context.mark("dispatch", "created", {"workflow": "deploy-config.yml"})
    assert connector.send_notification(make_event())["issue_number"] == 7
    assert github_fake.requests == []


def test_dispatch__earlier_attempt_unknown_and_run_titled_with_event__found(
        github_fake: FakeGitHub) -> None:
    # Given a dispatch GitHub accepted for this event (its run-name carries the event id)
    event = make_event(event_id=EVENT_ID, timestamp=_now_iso())
    connector_for(github_fake, auto_create_issues=False).send_notification(event)
    connector = connector_for(github_fake, auto_create_issues=False)
    connector.context.mark("dispatch", "creating")
    # When the retry runs
    ref = connector.dispatch_deploy(event)
    # Then the run is found and nothing is dispatched again
    assert len(github_fake.dispatches()) == 1
    assert ref["workflow_run_id"] == github_fake.dispatches()[0]["run_id"]
    assert github_fake.requests[-1].query["event"] == "workflow_dispatch"


def test_dispatch__run_name_without_event_id__cannot_be_found_so_dispatched_again() -> None:
    # Given a workflow whose run-name does not carry the event id (the documented limitation)
    with FakeGitHub() as fake:
        fake.add_repo(TRACKING)
        fake.add_repo(INFRA)
        fake.add_workflow(INFRA)
        event = make_event(event_id=EVENT_ID, timestamp=_now_iso())
        connector_for(fake, auto_create_issues=False).send_notification(event)
        connector = connector_for(fake, auto_create_issues=False)
        connector.context.mark("dispatch", "creating")
        # When a retry after an unknown outcome runs / Then the look-up misses: two dispatches
        connector.dispatch_deploy(event)
        assert len(fake.dispatches()) == 2


def test_create__github_answers_502__outcome_unknown_so_next_attempt_looks(
        github_fake: FakeGitHub) -> None:
    # Given GitHub answers the issue POST with 502 (it may have created the issue anyway)
    connector = connector_for(github_fake, workflow_triggers={})
    github_fake.fail_next(502, method="POST")
    # When sent / Then retryable, and the record says "creating" so the retry looks first
    with pytest.raises(TransportError, match="github answered 502: Server Error"):
        connector.send_notification(make_event(event_id=EVENT_ID))
    assert connector.context.created("issue") == {"state": "creating", "ref": None}
    connector.send_notification(make_event(event_id=EVENT_ID))
    assert [r.method for r in github_fake.requests] == ["POST", "GET", "POST"]
    assert len(github_fake.issues()) == 1


def test_dispatch__unknown_ref__rejected_with_githubs_message_and_record_forgotten(
        github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake, auto_create_issues=False, workflow_ref="release/v9")
    with pytest.raises(Rejected, match="github answered 422: No ref found for: release/v9"):
        connector.send_notification(make_event())
    assert connector.context.created("dispatch") is None


def test_send__token_refused__auth_error_without_the_token(github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake)
    connector.config["token"] = "ghp_" + "z" * 36
    with pytest.raises(AuthError, match="github answered 401: Bad credentials") as caught:
        connector.send_notification(make_event())
    assert "z" * 36 not in str(caught.value)


@pytest.mark.parametrize("status", [403, 429])
def test_send__secondary_rate_limit__rate_limited_not_auth(github_fake: FakeGitHub,
                                                          status: int) -> None:
    connector = connector_for(github_fake)
    github_fake.secondary_rate_limit(status=status)
    with pytest.raises(RateLimited, match="secondary rate limit") as caught:
        connector.send_notification(make_event())
    assert caught.value.retry_after_s == SECONDARY_WAIT_S


def test_send__primary_rate_limit_403__waits_until_reset(github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake)
    github_fake.primary_rate_limit(status=403, reset_in_s=42)
    with pytest.raises(RateLimited) as caught:
        connector.send_notification(make_event())
    assert 42 <= (caught.value.retry_after_s or 0) <= 44


def test_send__fake_rate_window_spent__primary_403_rate_limited_until_reset(
        github_fake: FakeGitHub) -> None:
    # Given GitHub allows one request a minute / When the second request is sent
    github_fake.rate_limit(1, per_s=60)
    connector = connector_for(github_fake)
    connector.health_check()
    with pytest.raises(RateLimited) as caught:
        connector.send_notification(make_event())
    # Then it is a rate limit (not an auth error), waiting for the window's reset
    assert caught.value.status == 403 and 55 <= (caught.value.retry_after_s or 0) <= 62


def test_send__repository_missing__rejected_with_not_found(github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake, repositories={"config-tracking": "company/gone",
                                                         "infrastructure": INFRA})
    with pytest.raises(Rejected, match=r"404: Not Found \(repository company/gone"):
        connector.send_notification(make_event())


def test_health_check__good_or_bad_token__true_or_false(github_fake: FakeGitHub) -> None:
    connector = connector_for(github_fake)
    assert connector.health_check() is True
    connector.config["token"] = "ghp_wrong"
    assert connector.health_check() is False
    assert [r.path for r in github_fake.requests] == ["/rate_limit", "/rate_limit"]


# the fake enforces the contract -------------------------------------------------------------


def _call(fake: FakeGitHub, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> requests.Response:
    base = {"Accept": MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {fake.token}"}
    return requests.request(method, fake.base_url + path, json=body,
                            headers={**base, **(headers or {})}, timeout=5)


@pytest.mark.parametrize(("headers", "status", "message"), [
    ({"Accept": "application/json"}, 415, "Unsupported 'Accept' header"),
    ({"X-GitHub-Api-Version": "2099-01-01"}, 400, "is not supported"),
    ({"Authorization": ""}, 401, "Requires authentication"),
    ({"Authorization": "Bearer ghp_nope"}, 401, "Bad credentials"),
])
def test_fake__wrong_headers_or_token__refused_like_github(
        github_fake: FakeGitHub, headers: dict[str, str], status: int, message: str) -> None:
    reply = _call(github_fake, "POST", f"/repos/{TRACKING}/issues", {"title": "t"}, headers)
    assert reply.status_code == status and message in reply.json()["message"]
    assert github_fake.issues() == []


@pytest.mark.parametrize(("body", "message"), [
    ({"body": "no title"}, "\"title\" wasn't supplied"),
    ({"title": " "}, "Validation Failed"),
    ({"title": "t", "labels": ["x" * 51]}, "Validation Failed"),
    ({"title": "t", "labels": "bug"}, "is not an array"),
])
def test_fake__bad_issue__422(github_fake: FakeGitHub, body: dict[str, Any],
                              message: str) -> None:
    reply = _call(github_fake, "POST", f"/repos/{TRACKING}/issues", body)
    assert reply.status_code == 422 and message in reply.json()["message"]


@pytest.mark.parametrize(("inputs", "message"), [
    ({"event_id": "e", "version": 3}, "For 'properties/version', 3 is not a string"),
    ({f"i{n}": "v" for n in range(26)}, "more than the maximum of 25"),
    ({"event_id": "e", "color": "red"}, 'Unexpected inputs provided: ["color"]'),
    ({"config_key": "k"}, "Required input 'event_id' not provided"),
])
def test_fake__bad_dispatch_inputs__422(github_fake: FakeGitHub, inputs: dict[str, Any],
                                        message: str) -> None:
    reply = _call(github_fake, "POST",
                  f"/repos/{INFRA}/actions/workflows/deploy-config.yml/dispatches",
                  {"ref": "main", "inputs": inputs})
    assert reply.status_code == 422 and message in reply.json()["message"]
    assert github_fake.dispatches() == []


def test_fake__unknown_repo_or_workflow__404(github_fake: FakeGitHub) -> None:
    assert _call(github_fake, "POST", "/repos/company/nope/issues", {"title": "t"}
                 ).status_code == 404
    assert _call(github_fake, "POST", f"/repos/{INFRA}/actions/workflows/nope.yml/dispatches",
                 {"ref": "main"}).json()["message"] == "Not Found"


def test_fake__issue_list__filters_by_every_label_and_state(github_fake: FakeGitHub) -> None:
    _call(github_fake, "POST", f"/repos/{TRACKING}/issues", {"title": "a", "labels": ["x", "y"]})
    _call(github_fake, "POST", f"/repos/{TRACKING}/issues", {"title": "b", "labels": ["x"]})
    found = _call(github_fake, "GET", f"/repos/{TRACKING}/issues?labels=x,y&state=all").json()
    assert [issue["title"] for issue in found] == ["a"]
    assert len(_call(github_fake, "GET", f"/repos/{TRACKING}/issues?labels=x").json()) == 2


# eager mode: the guide's set_config -------------------------------------------------------------


async def test_set_config__guide_config_eager__change_opens_issue_and_dispatches(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given the guide's config stored with set_config
    await service.set_config("integrations.github", guide_config(
        token=github_fake.token, api_url=github_fake.base_url))
    github_fake.reset()
    # When a key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com")
    # Then the ledger says delivered with the issue's number, and GitHub holds one of each
    records = await service.get_deliveries(result.event_id)
    assert [(r["connector"], r["status"]) for r in records] == [("github", "delivered")]
    assert [i["labels"][-1] for i in github_fake.issues()] == [f"apgcfg-{result.event_id}"]
    assert github_fake.dispatches()[0]["inputs"]["config_key"] == "app.database.host"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
