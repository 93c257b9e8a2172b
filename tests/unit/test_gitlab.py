"""GitLab connector: pure builders, settings, error mapping, and no-duplicate look-ups against
the loopback fake (MemoryContext, no worker)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from config_core.errors import ConfigError
from connectors.context import MemoryContext
from connectors.errors import AuthError, RateLimited, Rejected, Skipped, TransportError
from connectors.gitlab import GitLabConnector
from connectors.gitlab.api import api_root, encode, gitlab_message, reset_wait_s
from connectors.gitlab.payloads import (
    TITLE_LIMIT,
    api_pipeline_body,
    branch_name,
    check_ref,
    commit_action,
    commit_body,
    file_path,
    merge_request_body,
    pipeline_variables,
    plan,
    trigger_form,
)
from tests.fakes.gitlab import GUIDE_PROJECT, FakeGitLab, guide_config
from tests.unit.samples import make_event

PATH = GUIDE_PROJECT
FILE = "config/production/app.database.host.json"


@pytest.fixture
def gitlab_fake() -> Iterator[FakeGitLab]:
    """A started FakeGitLab with the guide's project and its deployment branch."""
    with FakeGitLab() as fake:
        fake.add_project(PATH, branches=("main", "config-deployment"))
        yield fake


def build(config: dict[str, Any]) -> GitLabConnector:
    GitLabConnector.validate_config(config)
    connector = GitLabConnector.from_stored("gitlab", config)
    assert isinstance(connector, GitLabConnector)
    return connector


def project_id(fake: FakeGitLab) -> int:
    found = fake.webhook_key(f"/api/v4/projects/{encode(PATH)}")
    assert found is not None
    return int(found.split(":")[0])


def posts(fake: FakeGitLab, suffix: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith(suffix)]


CONFIG = {"mr_target_branch": "main", "branch_prefix": "apgcfg/"}


# pure builders --------------------------------------------------------------------------------


def test_file_path__dotted_key__one_json_file_per_key_and_environment() -> None:
    # Given the guide's change / When its file path is built / Then it is config/<env>/<key>.json
    assert file_path(make_event()) == FILE
    assert file_path(make_event(environment="staging")) == \
        "config/staging/app.database.host.json"


def test_file_path__traversal_and_slashes_in_key__stay_one_file_under_config() -> None:
    # Given a key that tries to escape the directory
    event = make_event(key="../../etc/passwd")
    # When its path is built / Then it is one safe file name under config/<env>/
    assert file_path(event) == "config/production/etc-passwd.json"


def test_branch_name__same_event__deterministic_valid_and_carries_event_id() -> None:
    # Given one event and another change of the same key
    event = make_event(event_id="ab" * 16)
    other = make_event(event_id="cd" * 16, version=4)
    # When branch names are built
    first, again = branch_name(event, CONFIG), branch_name(event, CONFIG)
    # Then the same event always gives the same valid branch, carrying its id; others differ
    assert first == again == "apgcfg/production/app.database.host-v3-abababababab"
    assert branch_name(other, CONFIG) != first
    assert check_ref(first) is None


def test_branch_name__hostile_key__still_a_valid_git_ref() -> None:
    # Given keys with spaces, dots runs, colons and a .lock ending
    for key in ["a b", "x..y", "a:b~c^d", "cfg.lock", "@{x}", ".hidden", "ü.ñ"]:
        # When the branch name is built / Then git would accept it
        name = branch_name(make_event(key=key), CONFIG)
        assert check_ref(name) is None, name


def test_commit_action__existing_or_missing_file__create_update_or_delete() -> None:
    # Given changes and deletions of keys with and without a file on the target branch
    changed, deleted = make_event(), make_event(type="config.deleted", new_value=None)
    # Then the action fits what GitLab will accept
    assert commit_action(changed, exists=False) == "create"
    assert commit_action(changed, exists=True) == "update"
    assert commit_action(deleted, exists=True) == "delete"
    assert commit_action(deleted, exists=False) is None


def test_commit_body__new_key__one_action_on_new_branch_started_from_target() -> None:
    # Given the guide's change
    event = make_event(reason="database migration")
    # When the commit body is built
    body = commit_body(event, CONFIG, "create")
    # Then one create action writes the key's JSON document on the event's branch
    assert body["branch"] == branch_name(event, CONFIG)
    assert body["start_branch"] == "main"
    (action,) = body["actions"]
    assert action["action"] == "create" and action["file_path"] == FILE
    document = json.loads(action["content"])
    assert document["key"] == "app.database.host" and document["value"] == "prod-db.internal"
    assert document["version"] == 3 and document["event_id"] == event["event_id"]
    assert "Reason: database migration" in body["commit_message"]
    assert f"APG-Event-Id: {event['event_id']}" in body["commit_message"]


def test_commit_body__deleted_key__delete_action_without_content() -> None:
    # Given a deletion / When its commit body is built / Then it deletes the file, no content
    body = commit_body(make_event(type="config.deleted", new_value=None), CONFIG, "delete")
    assert body["actions"] == [{"action": "delete", "file_path": FILE}]
    assert body["commit_message"].startswith("Delete app.database.host in production")


def test_merge_request_body__long_key__title_within_gitlab_limit() -> None:
    # Given a very long key
    event = make_event(key="k" * 400)
    # When the merge request body is built
    body = merge_request_body(event, CONFIG)
    # Then the title fits GitLab's 255 characters and source/target are the event's branches
    assert len(body["title"]) <= TITLE_LIMIT and body["title"].endswith("…")
    assert body["source_branch"] == branch_name(event, CONFIG)
    assert body["target_branch"] == "main" and body["remove_source_branch"] is True


def test_merge_request_description__mentions_and_quick_actions__only_inside_code() -> None:
    # Given user text that would ping everyone and merge the MR if GitLab rendered it as text
    event = make_event(reason="@all please\n/merge", changed_by="x` @here `y",
                       new_value={"note": "line\n/approve"})
    # When the description is built
    text = merge_request_body(event, CONFIG)["description"]
    # Then no line starts a quick action and every mention sits inside a code span or block
    assert not any(line.lstrip().startswith("/") for line in text.splitlines())
    reason_row = next(line for line in text.splitlines() if line.startswith("| Reason"))
    assert reason_row == "| Reason | ` @all please /merge ` |"
    changed_row = next(line for line in text.splitlines() if line.startswith("| Changed by"))
    assert changed_row == "| Changed by | `` x` @here `y `` |"


def test_pipeline_variables__any_value__strings_with_event_fingerprint() -> None:
    # Given a change to a dict value with no reason
    event = make_event(new_value={"a": 1}, old_value=None, reason=None)
    # When the variables are built
    variables = pipeline_variables(event, "config-deploy")
    # Then every value is a string: JSON for structures, empty for None; the fingerprint is there
    assert all(isinstance(v, str) for v in variables.values())
    assert variables["CONFIG_VALUE"] == '{"a":1}' and variables["CONFIG_OLD_VALUE"] == ""
    assert variables["CONFIG_VERSION"] == "3" and variables["CONFIG_KEY"] == "app.database.host"
    assert variables["CONFIG_EVENT_ID"] == event["event_id"]
    assert variables["CONFIG_TRIGGER"] == "config-deploy"


def test_trigger_form_and_api_body__same_variables__in_each_endpoint_shape() -> None:
    # Given one change
    event = make_event()
    # When both pipeline request shapes are built
    form = dict(trigger_form(event, "deploy", "config-deployment", "glptt-x"))
    body = api_pipeline_body(event, "deploy", "config-deployment")
    # Then the trigger form carries token, ref and variables[KEY]; the API body a key/value list
    assert form["token"] == "glptt-x" and form["ref"] == "config-deployment"
    assert form["variables[CONFIG_VALUE]"] == "prod-db.internal"
    assert body["ref"] == "config-deployment"
    assert {"key": "CONFIG_VALUE", "value": "prod-db.internal",
            "variable_type": "env_var"} in body["variables"]
    assert {v["key"] for v in body["variables"]} == \
        {k[len("variables["):-1] for k in form if k.startswith("variables[")}


@pytest.mark.parametrize(("event", "config", "reason"), [
    (make_event(type="config.error"), {"auto_create_mrs": True}, "not config.error"),
    (make_event(type="deployment.finished"), {"auto_create_mrs": True}, "not deployment"),
    (make_event(key="integrations.gitlab"), {"auto_create_mrs": True}, "configures this"),
    (make_event(), {"auto_create_mrs": False}, "auto_create_mrs is off"),
])
def test_plan__event_or_config_asks_nothing__skipped_with_reason(
        event: dict[str, Any], config: dict[str, Any], reason: str) -> None:
    # Given an event the configuration does not ask for / When planned / Then Skipped says why
    with pytest.raises(Skipped, match=reason):
        plan(event, config)


def test_plan__mrs_and_triggers__merge_request_and_each_pipeline() -> None:
    # Given both features configured / When a change is planned / Then both are done
    work = plan(make_event(type="config.deleted"),
                {"auto_create_mrs": True, "pipeline_triggers": {"b": "main", "a": "deploy"}})
    assert work.merge_request and work.pipelines == (("a", "deploy"), ("b", "main"))


# settings -------------------------------------------------------------------------------------


def test_settings__guide_config__valid_with_defaults() -> None:
    # Given the guide's config / When validated / Then accepted, defaults filled in
    config = GitLabConnector.validate_config({
        "base_url": "https://gitlab.company.com", "token": "glpat-x", "project_id": 12345,
        "auto_create_mrs": True, "mr_target_branch": "main",
        "pipeline_triggers": {"config-deploy": "config-deployment"}})
    assert config["branch_prefix"] == "apgcfg/" and config["auto_create_mrs"] is True


@pytest.mark.parametrize(("field", "value"), [
    ("project_id", "no-namespace"), ("project_id", 0), ("project_id", True),
    ("project_id", "group/"), ("base_url", "http://gitlab.company.com"),
    ("mr_target_branch", "bad branch"), ("pipeline_triggers", {"deploy": "a..b"}),
    ("pipeline_triggers", {"deploy": 5}), ("branch_prefix", "-x/"),
    ("auto_create_mrs", "yes"),
])
def test_settings__bad_value__refused_naming_the_field(field: str, value: Any) -> None:
    # Given a config with one bad setting / When validated / Then ConfigError names that field
    config = {"token": "glpat-x", "project_id": "group/project", field: value}
    with pytest.raises(ConfigError, match=f"integrations.gitlab.{field}"):
        GitLabConnector.validate_config(config)


def test_settings__unknown_or_missing__refused() -> None:
    # Given a misspelt setting, then a missing token / Then each is refused by name
    with pytest.raises(ConfigError, match="merge_target"):
        GitLabConnector.validate_config({"token": "t", "project_id": 1, "merge_target": "x"})
    with pytest.raises(ConfigError, match=r"integrations\.gitlab\.token is required"):
        GitLabConnector.validate_config({"project_id": 1})


def test_repr__configured__token_and_trigger_token_masked(gitlab_fake: FakeGitLab) -> None:
    # Given both secrets configured / Then neither shows in repr
    connector = build(guide_config(gitlab_fake, trigger_token="glptt-secret-trigger"))
    assert gitlab_fake.token not in repr(connector)
    assert "glptt-secret-trigger" not in repr(connector)


# API helpers ----------------------------------------------------------------------------------


def test_api_root__server_urls__one_api_v4_suffix() -> None:
    assert api_root("https://gitlab.company.com") == "https://gitlab.company.com/api/v4"
    assert api_root("https://h/gitlab/") == "https://h/gitlab/api/v4"
    assert api_root("https://h/api/v4/") == "https://h/api/v4"
    assert encode("group/sub/project") == "group%2Fsub%2Fproject"


@pytest.mark.parametrize(("body", "text"), [
    ({"message": "404 Project Not Found"}, "404 Project Not Found"),
    ({"message": ["Another open merge request already exists for this source branch: !7"]},
     "Another open merge request already exists for this source branch: !7"),
    ({"message": {"base": ["Reference not found"]}}, "Reference not found"),
    ({"message": {"title": ["is too long", "is blank"]}}, "title is too long, is blank"),
    ({"error": "ref is missing"}, "ref is missing"),
    ("Retry later", None),
])
def test_gitlab_message__every_error_shape__readable_text(body: Any, text: str | None) -> None:
    assert gitlab_message(body) == text


def test_reset_wait__only_ratelimit_reset__seconds_until_reset() -> None:
    # Given a 429 with RateLimit-Reset 30 s ahead and no Retry-After
    response = requests.Response()
    response.status_code = 429
    response.headers["RateLimit-Reset"] = str(int(time.time()) + 30)
    # Then the wait is about 30 s
    wait = reset_wait_s(response)
    assert wait is not None and 28 <= wait <= 30


# against the fake -----------------------------------------------------------------------------


def test_send__guide_config__commit_merge_request_and_pipeline(gitlab_fake: FakeGitLab) -> None:
    # Given the guide's config against the fake
    connector = build(guide_config(gitlab_fake))
    event = make_event(reason="database migration")
    # When the change is sent
    result = connector.send_notification(event)
    # Then the key's file is committed on the event's branch, an MR targets main, and a pipeline
    # runs on config-deployment with the change as variables
    pid, branch = project_id(gitlab_fake), branch_name(event, CONFIG)
    assert json.loads(gitlab_fake.file(pid, branch, FILE) or "")["value"] == "prod-db.internal"
    assert gitlab_fake.file(pid, "main", FILE) is None
    (mr,) = gitlab_fake.merge_requests()
    assert (mr["source_branch"], mr["target_branch"]) == (branch, "main")
    (pipeline,) = gitlab_fake.pipelines()
    variables = {v["key"]: v["value"] for v in pipeline["variables"]}
    assert pipeline["ref"] == "config-deployment" and pipeline["source"] == "api"
    assert variables["CONFIG_VALUE"] == "prod-db.internal"
    assert result["merge_request_iid"] == mr["iid"]
    assert result["pipelines"] == {"config-deploy": pipeline["id"]}


def test_send__project_path__url_encoded_in_every_call(gitlab_fake: FakeGitLab) -> None:
    # Given a project given by its path / When a change is sent
    build(guide_config(gitlab_fake)).send_notification(make_event())
    # Then each call names it (and the file) as one encoded segment
    paths = [r.path for r in gitlab_fake.requests]
    assert paths and all(p.startswith("/api/v4/projects/group%2Fconfig-repo/") for p in paths)
    assert any("/repository/files/config%2Fproduction%2Fapp.database.host.json" in p
               for p in paths)
    assert all(r.header("PRIVATE-TOKEN") == gitlab_fake.token for r in gitlab_fake.requests)


def test_send__file_already_on_target__update_action() -> None:
    # Given the key's file already on main
    with FakeGitLab() as fake:
        fake.add_project(PATH, files={FILE: "{}\n"})
        # When the key changes
        build(guide_config(fake, pipeline_triggers=None)).send_notification(make_event())
        # Then the commit updates it (a create would be refused by GitLab)
        (commit,) = fake.commits()
        assert commit["actions"][0]["action"] == "update"


def test_send__deleted_key__delete_commit_or_skipped_when_no_file() -> None:
    # Given a project holding the file of one deleted key but not of another
    with FakeGitLab() as fake:
        fake.add_project(PATH, files={FILE: "{}\n"})
        connector = build(guide_config(fake, pipeline_triggers=None))
        # When both deletions arrive
        connector.send_notification(make_event(type="config.deleted", new_value=None))
        connector.context = MemoryContext()
        with pytest.raises(Skipped, match="nothing to delete"):
            connector.send_notification(make_event(type="config.deleted", key="gone.key",
                                                   event_id="9" * 32))
        # Then only the first one committed a deletion
        assert [c["actions"][0]["action"] for c in fake.commits()] == ["delete"]
        assert len(fake.merge_requests()) == 1


def test_send__trigger_token__form_post_without_private_token(gitlab_fake: FakeGitLab) -> None:
    # Given a trigger token
    token = gitlab_fake.add_trigger(project_id(gitlab_fake))
    connector = build(guide_config(gitlab_fake, auto_create_mrs=False, trigger_token=token))
    # When a change is sent
    connector.send_notification(make_event())
    # Then the pipeline started through the trigger endpoint, token in the form body only
    (request,) = posts(gitlab_fake, "/trigger/pipeline")
    assert request.header("PRIVATE-TOKEN") is None and token not in request.path
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    (pipeline,) = gitlab_fake.pipelines()
    assert pipeline["source"] == "trigger"


def test_send__wrong_trigger_token__rejected_with_hint_and_no_token(
        gitlab_fake: FakeGitLab) -> None:
    # Given a personal token used as trigger token (GitLab answers 404)
    connector = build(guide_config(gitlab_fake, auto_create_mrs=False,
                                   trigger_token="glptt-wrong-token-value"))
    # When a change is sent / Then Rejected with GitLab's text and a hint, no token shown
    with pytest.raises(Rejected, match=r"404 Not Found.*trigger_token") as caught:
        connector.send_notification(make_event())
    assert "glptt-wrong-token-value" not in str(caught.value)


def test_send__bad_token__auth_error_without_token(gitlab_fake: FakeGitLab) -> None:
    # Given a wrong PRIVATE-TOKEN
    connector = build(guide_config(gitlab_fake, token="glpat-wrong-secret"))
    # When sent / Then AuthError with GitLab's text and a hint, never the token
    with pytest.raises(AuthError, match=r"401 Unauthorized.*integrations\.gitlab\.token") as caught:
        connector.send_notification(make_event())
    assert "glpat-wrong-secret" not in str(caught.value)
    assert not gitlab_fake.commits()


def test_send__429_with_headers__rate_limited_for_the_longer_wait(
        gitlab_fake: FakeGitLab) -> None:
    # Given GitLab rate limits with Retry-After 3 and a RateLimit-Reset 20 s away
    gitlab_fake.fail_next(429, retry_after_s=3,
                          headers={"RateLimit-Reset": str(int(time.time()) + 20)})
    # When sent / Then RateLimited waits for the reset
    with pytest.raises(RateLimited) as caught:
        build(guide_config(gitlab_fake)).send_notification(make_event())
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 18


def test_send__unknown_project__rejected_with_gitlab_message(gitlab_fake: FakeGitLab) -> None:
    # Given a project the token cannot see / When sent / Then dead with GitLab's text
    with pytest.raises(Rejected, match="404 Project Not Found"):
        build(guide_config(gitlab_fake, project_id="group/other")).send_notification(
            make_event())


def test_send__missing_pipeline_ref__rejected_with_reference_not_found(
        gitlab_fake: FakeGitLab) -> None:
    # Given a trigger on a branch that does not exist
    connector = build(guide_config(gitlab_fake, auto_create_mrs=False,
                                   pipeline_triggers={"deploy": "no-such-branch"}))
    # When sent / Then Rejected with GitLab's {"message": {"base": [...]}} text
    with pytest.raises(Rejected, match="gitlab answered 400: Reference not found"):
        connector.send_notification(make_event())


def test_send__5xx_on_create__transport_error_so_next_attempt_looks_first(
        gitlab_fake: FakeGitLab) -> None:
    # Given GitLab answers the commit with 502
    connector = build(guide_config(gitlab_fake, pipeline_triggers=None))
    gitlab_fake.fail_next(502, method="POST")
    # When sent / Then the attempt fails as retryable with the outcome left unknown
    with pytest.raises(TransportError, match="502"):
        connector.send_notification(make_event())
    assert connector.context.created("commit") == {"state": "creating", "ref": None}
    # And the next attempt looks (no branch), then commits once
    connector.send_notification(make_event())
    assert len(gitlab_fake.commits()) == 1 and len(gitlab_fake.merge_requests()) == 1


def test_create_once__commit_outcome_unknown__found_by_branch_not_recommitted(
        gitlab_fake: FakeGitLab) -> None:
    # Given an attempt whose commit reached GitLab but whose answer was lost
    connector = build(guide_config(gitlab_fake, pipeline_triggers=None))
    connector.send_notification(make_event())
    connector.context.mark("commit", "creating")
    connector.context.forget("merge_request")
    # When the delivery runs again
    result = connector.send_notification(make_event())
    # Then the commit is found by its branch, and the MR (409) is adopted, nothing doubled
    assert len(posts(gitlab_fake, "/repository/commits")) == 1
    assert len(gitlab_fake.commits()) == 1 and len(gitlab_fake.merge_requests()) == 1
    assert result["commit"] == gitlab_fake.commits()[0]["id"]


def test_create_once__dedupe_record_lost__branch_exists_error_adopts_branch(
        gitlab_fake: FakeGitLab) -> None:
    # Given a delivery whose dedupe records are gone (GitLab refuses to re-create the branch)
    connector = build(guide_config(gitlab_fake, pipeline_triggers=None))
    connector.send_notification(make_event())
    connector.context = MemoryContext()
    # When it runs again
    result = connector.send_notification(make_event())
    # Then the existing branch and open MR are adopted: one commit, one MR
    assert len(gitlab_fake.commits()) == 1 and len(gitlab_fake.merge_requests()) == 1
    assert result["merge_request_iid"] == 1
    assert len(posts(gitlab_fake, "/merge_requests")) == 2  # the second one answered 409


def test_create_once__mr_outcome_unknown__found_by_source_branch(
        gitlab_fake: FakeGitLab) -> None:
    # Given an MR that GitLab created although the answer was lost
    connector = build(guide_config(gitlab_fake, pipeline_triggers=None))
    connector.send_notification(make_event())
    connector.context.mark("merge_request", "creating")
    # When the delivery runs again / Then the MR is looked up, not re-posted
    result = connector.send_notification(make_event())
    assert len(posts(gitlab_fake, "/merge_requests")) == 1
    assert result["merge_request_iid"] == gitlab_fake.merge_requests()[0]["iid"]


@pytest.mark.parametrize("trigger", [False, True])
def test_create_once__pipeline_outcome_unknown__found_by_event_id_variable(
        gitlab_fake: FakeGitLab, trigger: bool) -> None:
    # Given a pipeline started for this event, plus one for another event on the same ref
    token = gitlab_fake.add_trigger(project_id(gitlab_fake)) if trigger else None
    connector = build(guide_config(gitlab_fake, auto_create_mrs=False, trigger_token=token))
    connector.send_notification(make_event())
    connector.context = MemoryContext()
    connector.send_notification(make_event(event_id="7" * 32))
    connector.context = MemoryContext()
    connector.context.mark("pipeline:config-deploy", "creating")
    # When the first event's delivery runs again after an unknown outcome
    result = connector.send_notification(make_event())
    # Then its own pipeline is found by CONFIG_EVENT_ID, and no third one is started
    first = gitlab_fake.pipelines()[0]
    assert len(gitlab_fake.pipelines()) == 2
    assert result["pipelines"] == {"config-deploy": first["id"]}


def test_health_check__good_and_bad_token__true_then_false(gitlab_fake: FakeGitLab) -> None:
    assert build(guide_config(gitlab_fake)).health_check() is True
    assert build(guide_config(gitlab_fake, token="glpat-bad")).health_check() is False


# the fake enforces the contract ---------------------------------------------------------------


def call(fake: FakeGitLab, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"PRIVATE-TOKEN": fake.token, **kwargs.pop("headers", {})}
    return requests.request(method, f"{fake.base_url}/api/v4/projects/{path}", headers=headers,
                            timeout=5, **kwargs)


def test_fake__auth_and_encoding__401_body_and_404_for_unencoded_paths(
        gitlab_fake: FakeGitLab) -> None:
    bad = call(gitlab_fake, "GET", "group%2Fconfig-repo", headers={"PRIVATE-TOKEN": "nope"})
    assert (bad.status_code, bad.json()) == (401, {"message": "401 Unauthorized"})
    assert call(gitlab_fake, "GET", "group/config-repo").status_code == 404
    assert call(gitlab_fake, "GET", "group%2Fconfig-repo/repository/files/config/x.json",
                params={"ref": "main"}).status_code == 404
    bearer = call(gitlab_fake, "GET", "group%2Fconfig-repo",
                  headers={"PRIVATE-TOKEN": "", "Authorization": f"Bearer {gitlab_fake.token}"})
    assert bearer.status_code == 200


def test_fake__commit_rules__create_update_and_branch_existence_enforced(
        gitlab_fake: FakeGitLab) -> None:
    def commit(branch: str, action: str, start: str | None = "main") -> requests.Response:
        body = {"branch": branch, "commit_message": "m",
                "actions": [{"action": action, "file_path": "a.json", "content": "{}"}]}
        if start:
            body["start_branch"] = start
        return call(gitlab_fake, "POST", "group%2Fconfig-repo/repository/commits", json=body)

    assert commit("b1", "update").json() == {"message": "A file with this name doesn't exist"}
    assert commit("b1", "create").status_code == 201
    assert commit("b1", "create", start=None).json() == {
        "message": "A file with this name already exists"}
    assert "A branch called 'b1' already exists" in commit("b1", "create").json()["message"]
    assert commit("b2", "create", start="nope").json() == {
        "message": "You can only create or edit files when you are on a branch"}
    missing = call(gitlab_fake, "POST", "group%2Fconfig-repo/repository/commits", json={})
    assert missing.status_code == 400 and "branch is missing" in missing.json()["error"]


def test_fake__second_open_mr_same_branch__409_naming_the_open_one(
        gitlab_fake: FakeGitLab) -> None:
    body = {"source_branch": "config-deployment", "target_branch": "main", "title": "t"}
    first = call(gitlab_fake, "POST", "group%2Fconfig-repo/merge_requests", json=body)
    second = call(gitlab_fake, "POST", "group%2Fconfig-repo/merge_requests", json=body)
    assert first.status_code == 201 and second.status_code == 409
    assert second.json() == {"message": [
        "Another open merge request already exists for this source branch: !1"]}
    listed = call(gitlab_fake, "GET", "group%2Fconfig-repo/merge_requests",
                  params={"source_branch": "config-deployment", "state": "opened"}).json()
    assert [mr["iid"] for mr in listed] == [1]


def test_fake__pipelines__ref_trigger_token_and_variables_enforced(
        gitlab_fake: FakeGitLab) -> None:
    unknown_ref = call(gitlab_fake, "POST", "group%2Fconfig-repo/pipeline", json={"ref": "x"})
    assert unknown_ref.json() == {"message": {"base": ["Reference not found"]}}
    with_pat = requests.post(f"{gitlab_fake.base_url}/api/v4/projects/group%2Fconfig-repo/"
                             "trigger/pipeline", data={"token": gitlab_fake.token, "ref": "main"},
                             timeout=5)
    assert with_pat.status_code == 404
    made = call(gitlab_fake, "POST", "group%2Fconfig-repo/pipeline",
                json={"ref": "main", "variables": [{"key": "K", "value": "V"}]}).json()
    variables = call(gitlab_fake, "GET", f"group%2Fconfig-repo/pipelines/{made['id']}/variables")
    assert variables.json() == [{"variable_type": "env_var", "key": "K", "value": "V",
                                 "raw": False}]
    listed = call(gitlab_fake, "GET", "group%2Fconfig-repo/pipelines",
                  params={"ref": "main", "source": "api"}).json()
    assert [p["id"] for p in listed] == [made["id"]]


def test_fake__fail_next_for_one_endpoint__other_endpoints_unaffected(
        gitlab_fake: FakeGitLab) -> None:
    gitlab_fake.fail_next(503, webhook_url=gitlab_fake.endpoint_url(project_id(gitlab_fake),
                                                                    "merge_requests"))
    assert call(gitlab_fake, "GET", "group%2Fconfig-repo").status_code == 200
    body = {"source_branch": "config-deployment", "target_branch": "main", "title": "t"}
    failed = call(gitlab_fake, "POST", "group%2Fconfig-repo/merge_requests", json=body)
    assert failed.status_code == 503 and not gitlab_fake.merge_requests()


def test_fake__scripted_429__gitlab_rate_limit_headers(gitlab_fake: FakeGitLab) -> None:
    gitlab_fake.fail_next(429, retry_after_s=7)
    answer = call(gitlab_fake, "GET", "group%2Fconfig-repo")
    assert answer.status_code == 429 and answer.text.startswith("Retry later")
    assert answer.headers["Retry-After"] == "7"
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
            "RateLimit-ResetTime"} <= set(answer.headers)
