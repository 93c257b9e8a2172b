"""Jenkins connector: build parameters, settings, skips, errors, dedupe and build follow-ups."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from config_core import ConfigError, ConfigService
from connectors import AuthError, RateLimited, Rejected, Skipped, Unavailable
from connectors.context import FollowUp, MemoryContext
from connectors.jenkins import JenkinsConnector
from connectors.jenkins.payload import (
    build_parameters,
    jenkins_message,
    job_path,
    on_server,
    parameter_value,
    skip_reason,
)
from tests.fakes.jenkins import FakeJenkins, error_page, oops_page
from tests.unit.samples import make_event

EVENT_ID = "e" * 32
GUIDE_CONFIG = {
    "base_url": "https://jenkins.company.com", "username": "automation",
    "api_token": "your-jenkins-token", "default_job": "config-deployment",
    "trigger_patterns": ["app.database.*", "app.cache.*"],
    "job_parameters": {"ENVIRONMENT": "production", "NOTIFY_TEAM": "platform"},
}
"""The guide's configuration, verbatim."""


@pytest.fixture
def jenkins_fake() -> Iterator[FakeJenkins]:
    """A started FakeJenkins (builds leave the queue and finish after one poll each)."""
    with FakeJenkins() as fake:
        yield fake


def connect(config: dict[str, Any], event_id: str = EVENT_ID, **context: Any
            ) -> JenkinsConnector:
    JenkinsConnector.validate_config(config)
    connector = JenkinsConnector.from_stored("jenkins", config)
    assert isinstance(connector, JenkinsConnector)
    connector.context = MemoryContext(event_id=event_id, **context)
    return connector


def event(**overrides: Any) -> dict[str, Any]:
    return make_event(event_id=EVENT_ID, **overrides)


def posts(fake: FakeJenkins) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


def follow_to_end(connector: JenkinsConnector, limit: int = 10) -> list[FollowUp]:
    """Run the scheduled follow-up chain until it ends; return the steps taken."""
    steps = list(connector.context.follow_ups)  # type: ignore[attr-defined]
    state = steps[-1].state
    for _ in range(limit):
        step = connector.follow_up(state)
        if step is None:
            return steps
        steps.append(step)
        state = step.state
    raise AssertionError(f"follow-ups did not end: {steps}")


# pure builders -----------------------------------------------------------------------------


def test_build_parameters__guide_config__change_fields_extras_and_fingerprint() -> None:
    # Given the guide's config and its example change
    # When the parameters are built
    parameters = build_parameters(event(), GUIDE_CONFIG)
    # Then the pipeline's parameters, the job_parameters and the event id are all strings
    assert parameters == {"ENVIRONMENT": "production", "NOTIFY_TEAM": "platform",
                          "CONFIG_KEY": "app.database.host", "CONFIG_VALUE": "prod-db.internal",
                          "USER_ID": "admin@company.com", "APGCFG_EVENT_ID": EVENT_ID}


@pytest.mark.parametrize(("value", "text"), [
    ("plain", "plain"), (5433, "5433"), (True, "true"), (None, "null"),
    ({"pool": 10, "hosts": ["a", "b"]}, '{"pool":10,"hosts":["a","b"]}'), ("", "")])
def test_parameter_value__any_value__string_or_compact_json(value: Any, text: str) -> None:
    assert parameter_value(value) == text


def test_build_parameters__no_changed_by__empty_user_id() -> None:
    assert build_parameters(event(changed_by=None), GUIDE_CONFIG)["USER_ID"] == ""


@pytest.mark.parametrize(("job", "path"), [
    ("config-deployment", "/job/config-deployment"),
    ("deploy/prod", "/job/deploy/job/prod"),
    ("team a/deploy #1", "/job/team%20a/job/deploy%20%231")])
def test_job_path__folders_and_odd_names__one_job_segment_each_url_encoded(
        job: str, path: str) -> None:
    assert job_path(job) == path


def test_on_server__url_naming_another_host__kept_on_the_configured_server() -> None:
    # Given Jenkins answering with its own root URL (or anything else)
    # Then the credentials only ever go to base_url's host
    assert on_server("https://ci.example.com/", "http://internal:8080/job/x/7/") == \
        "https://ci.example.com/job/x/7/"
    assert on_server("https://ci.example.com", "queue/item/5/") == \
        "https://ci.example.com/queue/item/5/"


def test_skip_reason__event_types_and_patterns__only_matching_changes_trigger() -> None:
    assert skip_reason(event(), GUIDE_CONFIG) is None
    assert "matches no trigger_patterns" in (skip_reason(event(key="app.name"), GUIDE_CONFIG)
                                             or "")
    finished = skip_reason(event(type="deployment.finished"), GUIDE_CONFIG) or ""
    assert finished.startswith("deployment.finished events never trigger a build")
    assert skip_reason(event(type="config.deleted"), GUIDE_CONFIG) is not None


@pytest.mark.parametrize(("text", "message"), [
    (error_page(401, "Invalid password/token for user: bot").body.decode(),
     "Invalid password/token for user: bot"),
    (oops_page("java.lang.IllegalStateException: This build is not parameterized!")
     .body.decode(), "This build is not parameterized!"),
    ('{"message": "nope"}', "nope"),
    ("<html><head><title>502 Bad Gateway</title></head></html>", "502 Bad Gateway"),
    ("upstream timed out", "upstream timed out"),
    ("", None)])
def test_jenkins_message__error_bodies__jenkins_own_text(text: str, message: str | None) -> None:
    assert jenkins_message(text) == message


# settings ----------------------------------------------------------------------------------


def test_settings__guide_config__valid_with_defaults() -> None:
    config = JenkinsConnector.validate_config(GUIDE_CONFIG)
    assert config["poll_interval_s"] == 10 and config["build_timeout_s"] == 3600


@pytest.mark.parametrize(("change", "field"), [
    ({"api_token": None}, "integrations.jenkins.api_token is required"),
    ({"base_url": "http://jenkins.company.com"}, "integrations.jenkins.base_url must be"),
    ({"default_job": "folder//job"}, "integrations.jenkins.default_job must be a job name"),
    ({"trigger_patterns": "app.*"}, "integrations.jenkins.trigger_patterns must be a list"),
    ({"job_parameters": {"CONFIG_KEY": "x"}}, "integrations.jenkins.job_parameters must not"),
    ({"job_parameters": {"RETRIES": 3}},
     "integrations.jenkins.job_parameters ['RETRIES']: values must be strings"),
    ({"poll_interval_s": 0}, "integrations.jenkins.poll_interval_s must be greater than 0"),
    ({"build_timeout_s": "1h"}, "integrations.jenkins.build_timeout_s must be"),
    ({"username": " "}, "integrations.jenkins.username must not be empty"),
    ({"crumb": "x"}, "integrations.jenkins has unknown setting(s) ['crumb']")])
def test_settings__bad_value__refused_naming_the_field(change: dict[str, Any], field: str,
                                                      ) -> None:
    config = {**GUIDE_CONFIG, **change}
    with pytest.raises(ConfigError) as caught:
        JenkinsConnector.validate_config({k: v for k, v in config.items() if v is not None})
    assert field in str(caught.value)


def test_repr__configured__api_token_masked() -> None:
    assert "your-jenkins-token" not in repr(JenkinsConnector(GUIDE_CONFIG))


# triggering against the fake ---------------------------------------------------------------


def test_send__matching_change__form_encoded_build_queued_and_follow_up_scheduled(
        jenkins_fake: FakeJenkins) -> None:
    # Given the guide's config against a job in a folder
    jenkins_fake.add_job("deploy/config-deployment")
    connector = connect({**GUIDE_CONFIG, **jenkins_fake.config("deploy/config-deployment")})
    # When the guide's change is sent
    ref = connector.send_notification(event())
    # Then one build was queued with the change as string parameters, posted as a form
    [post] = posts(jenkins_fake)
    assert post.path == "/job/deploy/job/config-deployment/buildWithParameters"
    assert post.header("Content-Type") == "application/x-www-form-urlencoded"
    assert post.header("Authorization").startswith("Basic ")
    [queued] = jenkins_fake.messages()
    assert queued["parameters"] == {**build_parameters(event(), connector.config)}
    assert ref["queue_url"] == f"{jenkins_fake.base_url}/queue/item/{queued['queue_id']}/"
    # And its progress is checked later, with URLs and times only in the task's state
    [step] = connector.context.follow_ups  # type: ignore[attr-defined]
    assert step.delay_s == 10 and step.state["queue_url"] == ref["queue_url"]
    assert jenkins_fake.api_token not in repr(step.state)


def test_send__key_not_in_trigger_patterns__skipped_without_calling_jenkins(
        jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config(trigger_patterns=["app.cache.*"]))
    with pytest.raises(Skipped, match=r"'app\.database\.host' matches no trigger_patterns"):
        connector.send_notification(event())
    assert jenkins_fake.requests == []


def test_send__deployment_finished_event__skipped_never_triggers(
        jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config())
    with pytest.raises(Skipped, match=r"deployment\.finished events never trigger"):
        connector.send_notification(event(type="deployment.finished"))
    assert jenkins_fake.requests == []


def test_send__newer_version_already_triggered__skipped_as_stale(
        jenkins_fake: FakeJenkins) -> None:
    # Given version 5 of the key was triggered already
    connector = connect(jenkins_fake.config(), newest={"app.database.host": 5})
    # When version 3 arrives late
    with pytest.raises(Skipped) as caught:
        connector.send_notification(event(version=3))
    # Then it is stale and nothing starts
    assert str(caught.value) == "stale: version 5 of app.database.host was already triggered"
    assert posts(jenkins_fake) == []


def test_send__same_version_again__not_stale(jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config(), newest={"app.database.host": 3})
    connector.send_notification(event(version=3))
    assert len(jenkins_fake.messages()) == 1


def test_send__build_created_then_newer_version__redelivery_returns_the_build(
        jenkins_fake: FakeJenkins) -> None:
    # Given this event's build exists, then a newer version was triggered
    ref = {"queue_url": "q", "triggered_at": 1.0}
    connector = connect(jenkins_fake.config(), newest={"app.database.host": 9},
                        records={"build": {"state": "created", "ref": ref}})
    # When the delivery is redelivered
    result = connector.send_notification(event(version=3))
    # Then it finishes as delivered with the existing build, calling nobody
    assert result["queue_url"] == "q" and jenkins_fake.requests == []


def test_send__outcome_unknown_and_item_queued__found_by_event_id_not_posted_again(
        jenkins_fake: FakeJenkins) -> None:
    # Given an earlier attempt whose POST reached Jenkins but whose answer was lost
    config = jenkins_fake.config()
    connect(config).send_notification(event())
    jenkins_fake.reset()
    connector = connect(config, records={"build": {"state": "creating", "ref": None}})
    # When the delivery is retried
    ref = connector.send_notification(event())
    # Then the queue look-up finds the item: no second POST
    assert posts(jenkins_fake) == [] and ref["queue_url"].endswith("/queue/item/100/")
    assert [r.path for r in jenkins_fake.requests] == ["/queue/api/json"]
    assert connector.context.created("build")["state"] == "created"


def test_send__outcome_unknown_and_build_started__found_in_the_jobs_builds(
        jenkins_fake: FakeJenkins) -> None:
    # Given the earlier attempt's item already left the queue for build #1
    jenkins_fake.queue_polls = 0
    config = jenkins_fake.config()
    first = connect(config)
    first.send_notification(event())
    first.follow_up(first.context.follow_ups[0].state)  # type: ignore[attr-defined]
    connector = connect(config, records={"build": {"state": "creating", "ref": None}})
    # When the delivery is retried
    ref = connector.send_notification(event())
    # Then the build is found by its APGCFG_EVENT_ID parameter
    assert ref["build_number"] == 1 and ref["build_url"].endswith("/job/config-deployment/1/")
    assert len(posts(jenkins_fake)) == 1 and len(jenkins_fake.builds()) == 1


def test_send__outcome_unknown_and_nothing_at_jenkins__triggers_once(
        jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config(),
                        records={"build": {"state": "creating", "ref": None}})
    connector.send_notification(event())
    assert len(jenkins_fake.messages()) == 1 and len(posts(jenkins_fake)) == 1


def test_send__same_parameters_while_waiting__jenkins_answers_303_to_the_same_item(
        jenkins_fake: FakeJenkins) -> None:
    # Given a fresh dedupe record (lost), and the first item still waiting
    config = jenkins_fake.config()
    first = connect(config).send_notification(event())
    # When the same event is posted again
    second = connect(config).send_notification(event())
    # Then Jenkins coalesces it into the waiting item
    assert first["queue_url"] == second["queue_url"] and len(jenkins_fake.messages()) == 1


# errors ------------------------------------------------------------------------------------


def test_send__wrong_api_token__auth_error_without_the_token(jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config(api_token="wrong-token-0123456789"))
    with pytest.raises(AuthError) as caught:
        connector.send_notification(event())
    assert "Invalid password/token for user: automation" in str(caught.value)
    assert "wrong-token-0123456789" not in str(caught.value)
    assert connector.context.created("build") is None


def test_send__unknown_job__rejected_naming_the_job(jenkins_fake: FakeJenkins) -> None:
    config = {**jenkins_fake.config(), "default_job": "deploy/missing"}
    with pytest.raises(Rejected) as caught:
        connect(config).send_notification(event())
    assert caught.value.status == 404
    assert "no job 'deploy/missing' at /job/deploy/job/missing (Not Found)" in str(caught.value)


def test_send__job_without_parameters__rejected_with_jenkins_message(
        jenkins_fake: FakeJenkins) -> None:
    jenkins_fake.add_job("plain", parameters=None)
    with pytest.raises(Rejected, match="This build is not parameterized!"):
        connect(jenkins_fake.config("plain")).send_notification(event())


def test_send__disabled_job__rejected_409(jenkins_fake: FakeJenkins) -> None:
    jenkins_fake.add_job("off", buildable=False)
    with pytest.raises(Rejected, match="off is not buildable!"):
        connect(jenkins_fake.config("off")).send_notification(event())


def test_send__503_starting_up__retryable_and_the_retry_looks_before_posting(
        jenkins_fake: FakeJenkins) -> None:
    # Given Jenkins answers the trigger with 503 while it starts
    jenkins_fake.fail_next(503, method="POST")
    connector = connect(jenkins_fake.config())
    with pytest.raises(Unavailable, match="Jenkins is getting ready to work"):
        connector.send_notification(event())
    # When the delivery is retried
    connector.send_notification(event())
    # Then the retry looked for an earlier build first (a 5xx may follow a queued build),
    # found none, and triggered exactly one
    assert [(r.method, r.path) for r in jenkins_fake.requests][1:] == [
        ("GET", "/queue/api/json"), ("GET", "/job/config-deployment/api/json"),
        ("POST", "/job/config-deployment/buildWithParameters")]
    assert len(jenkins_fake.messages()) == 1


def test_send__proxy_429__rate_limited_with_retry_after(jenkins_fake: FakeJenkins) -> None:
    jenkins_fake.fail_next(429, method="POST", retry_after_s=7)
    with pytest.raises(RateLimited) as caught:
        connect(jenkins_fake.config()).send_notification(event())
    assert caught.value.retry_after_s == 7


def test_health_check__good_and_bad_token__true_then_false(jenkins_fake: FakeJenkins) -> None:
    assert connect(jenkins_fake.config()).health_check() is True
    assert connect(jenkins_fake.config(api_token="nope-0123456789")).health_check() is False
    assert [r.path for r in jenkins_fake.requests] == ["/api/json", "/api/json"]


# follow-ups --------------------------------------------------------------------------------


@pytest.mark.parametrize("result", ["SUCCESS", "FAILURE"])
def test_follow_up__build_runs__noted_and_deployment_finished_emitted(
        result: str) -> None:
    # Given a job whose build waits one poll in the queue and runs for two
    with FakeJenkins(queue_polls=1, build_polls=2, result=result) as fake:
        connector = connect(fake.config(poll_interval_s=0.5))
        connector.send_notification(event())
        # When the follow-ups run until they end
        steps = follow_to_end(connector)
    # Then each waiting step was re-scheduled, not slept on
    assert [s.delay_s for s in steps] == [0.5] * len(steps) and len(steps) == 4
    context: MemoryContext = connector.context  # type: ignore[assignment]
    [note] = context.notes
    build = note["build"]
    assert (build["number"], build["result"]) == (1, result)
    assert build["url"].endswith("/job/config-deployment/1/") and build["duration_ms"] >= 0
    assert context.emitted == [("deployment.finished", {
        "build_number": 1, "build_url": build["url"], "result": result,
        "job": "config-deployment"})]
    assert note["finished_event_id"] == "emitted-1"


def test_follow_up__run_again_after_finishing__no_second_note_or_event(
        jenkins_fake: FakeJenkins) -> None:
    jenkins_fake.queue_polls = jenkins_fake.build_polls = 0
    connector = connect(jenkins_fake.config())
    connector.send_notification(event())
    state = connector.context.follow_ups[0].state  # type: ignore[attr-defined]
    assert connector.follow_up(state) is None
    assert connector.follow_up(state) is None  # a duplicate chain (redelivered task)
    assert len(connector.context.notes) == 1  # type: ignore[attr-defined]
    assert len(connector.context.emitted) == 1  # type: ignore[attr-defined]


def test_follow_up__queue_item_cancelled__noted_cancelled(jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config())
    connector.send_notification(event())
    jenkins_fake.cancel(jenkins_fake.messages()[0]["queue_id"])
    assert connector.follow_up(connector.context.follow_ups[0].state) is None  # type: ignore
    [note] = connector.context.notes  # type: ignore[attr-defined]
    assert note["build"]["result"] == "CANCELLED" and note["build"]["number"] is None


def test_follow_up__queue_item_forgotten__build_found_by_event_id(
        jenkins_fake: FakeJenkins) -> None:
    # Given the item left the queue for build #1 and Jenkins has since forgotten the item
    jenkins_fake.queue_polls = jenkins_fake.build_polls = 0
    connector = connect(jenkins_fake.config())
    connector.send_notification(event())
    queue_id = jenkins_fake.messages()[0]["queue_id"]
    connect(jenkins_fake.config()).follow_up({"queue_url": f"{jenkins_fake.base_url}/queue/"
                                              f"item/{queue_id}/", "started_at": time.time()})
    jenkins_fake.forget_queue_item(queue_id)
    # When the follow-up looks at the item
    assert connector.follow_up(connector.context.follow_ups[0].state) is None  # type: ignore
    # Then the job's builds supplied the build, and its result is noted
    [note] = connector.context.notes  # type: ignore[attr-defined]
    assert (note["build"]["number"], note["build"]["result"]) == (1, "SUCCESS")


def test_follow_up__queue_item_forgotten_and_no_build_carries_the_id__noted_unknown(
        jenkins_fake: FakeJenkins) -> None:
    # Given a job that does not declare APGCFG_EVENT_ID (Jenkins drops undeclared parameters)
    jenkins_fake.add_job("undeclared", {"CONFIG_KEY": "", "CONFIG_VALUE": "", "USER_ID": ""})
    jenkins_fake.queue_polls = 0
    connector = connect(jenkins_fake.config("undeclared"))
    connector.send_notification(event())
    state = connector.context.follow_ups[0].state  # type: ignore[attr-defined]
    connect(jenkins_fake.config("undeclared")).follow_up(state)  # the build starts
    jenkins_fake.forget_queue_item(jenkins_fake.messages()[0]["queue_id"])
    # When the follow-up finds neither the queue item nor a build carrying the event id
    assert connector.follow_up(state) is None
    # Then the result is noted unknown, with the likely cause, and no event is emitted
    [note] = connector.context.notes  # type: ignore[attr-defined]
    assert note["build"]["result"] == "unknown" and "APGCFG_EVENT_ID" in note["build"]["error"]
    assert connector.context.emitted == []  # type: ignore[attr-defined]


def test_follow_up__no_queue_url__polls_the_builds_until_one_carries_the_event(
        jenkins_fake: FakeJenkins) -> None:
    # Given a trigger whose Location named no queue item
    connector = connect(jenkins_fake.config(poll_interval_s=1))
    connector.send_notification(event())
    state = {"queue_url": None, "started_at": time.time()}
    # When the build has not started yet / then has
    waiting = connector.follow_up(state)
    jenkins_fake.queue_s = 0
    jenkins_fake.build_polls = 0
    done = connector.follow_up(state)
    # Then the first step waits, the second finds build #1 and finishes it
    assert waiting == FollowUp(state, 1) and done is None
    assert connector.context.notes[0]["build"]["number"] == 1  # type: ignore[attr-defined]


def test_follow_up__past_build_timeout__noted_unknown_without_calling_jenkins(
        jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config(build_timeout_s=60))
    state = {"queue_url": f"{jenkins_fake.base_url}/queue/item/100/",
             "started_at": time.time() - 61}
    assert connector.follow_up(state) is None
    [note] = connector.context.notes  # type: ignore[attr-defined]
    assert note["build"]["result"] == "unknown" and "build_timeout_s" in note["build"]["error"]
    assert jenkins_fake.requests == [] and connector.context.emitted == []  # type: ignore


def test_follow_up__token_revoked__noted_unknown_without_the_token(
        jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config())
    connector.send_notification(event())
    jenkins_fake.api_token = "rotated-0123456789"
    assert connector.follow_up(connector.context.follow_ups[0].state) is None  # type: ignore
    [note] = connector.context.notes  # type: ignore[attr-defined]
    assert "401" in note["build"]["error"] and connector.config["api_token"] not in str(note)


def test_follow_up__jenkins_unavailable__raised_for_the_task_to_retry(
        jenkins_fake: FakeJenkins) -> None:
    connector = connect(jenkins_fake.config())
    connector.send_notification(event())
    jenkins_fake.fail_next(503)
    with pytest.raises(Unavailable):
        connector.follow_up(connector.context.follow_ups[0].state)  # type: ignore[attr-defined]
    assert connector.context.notes == []  # type: ignore[attr-defined]


# eager mode: the whole loop in one process --------------------------------------------------


async def test_change__eager__build_triggered_followed_noted_and_finished_event_skipped(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given Jenkins configured for database keys, polled without delay
    jenkins_fake.queue_polls = jenkins_fake.build_polls = 0
    await service.set_config("integrations.jenkins", jenkins_fake.config(
        trigger_patterns=["app.database.*"], poll_interval_s=0.01))
    # When a database key changes
    result = await service.set_config("app.database.host", "db2", changed_by="ops")
    # Then a build ran, and its result is on the ledger and in the key's history
    [record] = await service.get_deliveries(result.event_id)
    assert record["status"] == "delivered"
    assert record["detail"]["build"]["result"] == "SUCCESS"
    [entry] = await service.history("app.database.host")
    [note] = entry["notes"]
    assert (note["connector"], note["build"]["number"]) == ("jenkins", 1)
    # And the deployment.finished event was routed back to Jenkins, which skipped it
    [finished] = await service.get_deliveries(note["finished_event_id"])
    assert finished["status"] == "skipped"
    assert "deployment.finished events never trigger" in finished["detail"]["skipped"]
    assert len(jenkins_fake.messages()) == 1
