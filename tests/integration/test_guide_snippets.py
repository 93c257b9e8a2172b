"""The user's guide, pasted: each snippet runs verbatim in a script against real processes.

Snippets come from ``tests/data/enterprise-connectors-guide.md`` by heading (``tests.guide``)
and run in a fresh Python process as ``__main__``, with ``service = ConfigService()`` built from
the guide's environment variables. What a snippet leaves to its reader (where the vendor is,
which key to change next) is added after it, never edited into it. The vendors are loopback
fakes that accept the guide's placeholder credentials; a real worker delivers.

To cover another section, call ``run(snippet("Heading"), epilogue)`` and assert on the outcome
and on ``service``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import ApprovalDenied, ConfigService
from config_core.state import approvals as approval_state
from tests.conftest import redis_url
from tests.fakes.custom_system import FakeCustomSystem
from tests.fakes.discord import FakeDiscord
from tests.fakes.jira import FakeJira
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSMTP
from tests.fakes.zendesk import FakeZendesk
from tests.guide import README, Outcome, run_snippets, snippet
from tests.integration.conftest import FINISHED, all_in, wait_for_deliveries
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

GUIDE_DB = 6
"""The database of this module's worker (it has the guide's ZENDESK_API_TOKEN)."""

QUIET_DB = 5
"""A database no worker reads: snippets whose vendors are public hosts run there (a worker
would try to deliver their events for an hour)."""

ENV_TOKEN = "zendesk-env-token-7c41e2b9"
"""What ``ZENDESK_API_TOKEN`` holds, for the script (os.getenv) and the worker (${env:...})."""

REQUESTER, PLATFORM, DBA = "admin@company.com", "platform-team@company.com", "dba-team@company.com"

Run = Callable[..., Outcome]


@pytest.fixture(scope="module")
def guide_redis(redis_server: str) -> str:
    url = redis_url(GUIDE_DB)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def guide_worker(guide_redis: str, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(guide_redis, tmp_path_factory.mktemp("guide-worker"),
                         extra_env={"ZENDESK_API_TOKEN": ENV_TOKEN}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
async def service(guide_redis: str, tenant: str, guide_worker: WorkerProcess,
                  ) -> AsyncIterator[ConfigService]:
    svc = ConfigService(redis_url=guide_redis, environment="production", tenant=tenant)
    yield svc
    await svc.close()


@pytest.fixture(scope="module")
def quiet_redis(redis_server: str) -> str:
    url = redis_url(QUIET_DB)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
async def quiet_service(quiet_redis: str, tenant: str) -> AsyncIterator[ConfigService]:
    svc = ConfigService(redis_url=quiet_redis, environment="production", tenant=tenant)
    yield svc
    await svc.close()


def runner(url: str, tenant: str, tmp_path: Path) -> Run:
    def run(*parts: str, **env: str) -> Outcome:
        base = {"CONFIG_REDIS_URL": url, "CONFIG_TENANT": tenant,
                "CONFIG_ENVIRONMENT": "production"}
        return run_snippets(*parts, env={**base, **env}, cwd=tmp_path)
    return run


@pytest.fixture
def run(guide_redis: str, tenant: str, tmp_path: Path) -> Run:
    """Run snippets as a script in ``service``'s namespace, a real worker delivering."""
    return runner(guide_redis, tenant, tmp_path)


@pytest.fixture
def run_quiet(quiet_redis: str, tenant: str, tmp_path: Path) -> Run:
    """Run snippets as a script in ``quiet_service``'s namespace (nothing delivers)."""
    return runner(quiet_redis, tenant, tmp_path)


def succeeded(outcome: Outcome) -> Outcome:
    assert outcome.returncode == 0, f"the script failed:\n{outcome.stderr}"
    return outcome


def stored_as_written(code: str) -> str:
    """An epilogue printing what the snippet's last ``set_config`` stored, and what it gave."""
    key, value = re.findall(r'service\.set_config\(\s*"([^"]+)",\s*(.+?)\s*\)\s*$', code,
                            re.S)[-1]
    return (f"print(json.dumps([await service.get_config({key!r}, reveal=True), {value}]))\n")


# --- every setup snippet, as pasted --------------------------------------------------------

SETUP_SNIPPETS = [("Discord Integration", 0), ("Discord Integration", 1),
                  ("Slack Integration", 0), ("Zendesk Integration", 0), ("Jira Integration", 0),
                  ("New Relic Integration", 0), ("Splunk Integration", 0),
                  ("Jenkins Integration", 0), ("GitHub Integration", 0),
                  ("GitLab Integration", 0), ("Okta Integration", 0), ("Auth0 Integration", 0),
                  ("Event-Driven Architecture", 0), ("Approval Workflows", 0),
                  ("Performance", 0)]


@pytest.mark.parametrize(("heading", "index"), SETUP_SNIPPETS)
def test_setup_snippet__pasted_into_a_script__stored_and_read_back_as_written(
        run_quiet: Run, heading: str, index: int) -> None:
    # Given one of the guide's configuration snippets, as pasted
    code = snippet(heading, index)
    # When a script runs it, then reads the key back
    outcome = succeeded(run_quiet(code, stored_as_written(code)))
    # Then what is stored is what the snippet wrote
    stored, written = outcome.last_json()
    assert stored == written


def test_azure_ad_snippet__placeholder_ids__refused_naming_the_field(
        run_quiet: Run) -> None:
    # Given the Azure AD snippet, whose tenant_id is the placeholder "your-tenant-id"
    code = snippet("Azure Active Directory Integration")
    # When a script runs it as pasted
    outcome = run_quiet(code)
    # Then it stops with a ConfigError that names the field and what it must be
    assert outcome.returncode != 0
    assert "ConfigError: integrations.azure_ad.tenant_id must be the directory (tenant) id" \
        in outcome.stderr
    # And with real ids in place of the placeholders it is stored
    fixed = code.replace('"your-tenant-id"', '"8f3e2d1c-4b5a-4c6d-9e8f-0a1b2c3d4e5f"').replace(
        '"your-application-id"', '"1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"')
    stored, written = succeeded(run_quiet(fixed, stored_as_written(fixed))).last_json()
    assert stored == written


# --- approvals ------------------------------------------------------------------------------

@pytest.fixture
def approval_fakes() -> Iterator[tuple[FakeSlack, FakeJira, FakeSMTP]]:
    with FakeSlack() as slack, FakeJira(api_token="your-jira-token") as jira, \
            FakeSMTP(security="none") as smtp:
        yield slack, jira, smtp


async def configure_approvals(run: Run, fakes: tuple[FakeSlack, FakeJira, FakeSMTP],
                              epilogue: str = "") -> None:
    """The guide's Slack, Jira, routing and approval snippets, the vendors pointed at fakes."""
    slack, jira, smtp = fakes
    succeeded(run(
        snippet("Slack Integration"), snippet("Jira Integration"),
        f'await service.set_config("integrations.slack.webhook_url", {slack.add_webhook()!r})\n'
        f'await service.set_config("integrations.jira.server_url", {jira.base_url!r})\n'
        f'await service.set_config("integrations.email", {smtp.config()!r})\n',
        snippet("Event-Driven Architecture"), snippet("Approval Workflows"), epilogue))


async def test_approval_snippet__change_requested__announced_to_each_method_then_applied(
        service: ConfigService, run: Run,
        approval_fakes: tuple[FakeSlack, FakeJira, FakeSMTP]) -> None:
    # Given the guide's approval workflow, with slack, jira and e-mail as its methods
    await configure_approvals(run, approval_fakes)
    slack, jira, smtp = approval_fakes
    # When a database key is changed
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by=REQUESTER, reason="database migration")
    # Then nothing is applied: the change waits for approval
    assert result.status == "pending_approval" and result.request_id
    assert await service.get_config("app.database.host", None) is None
    # And approval.requested reaches each approval method through the worker
    rows = await wait_for_deliveries(service, result.event_id or "", FINISHED)
    assert {(r["connector"], r["status"]) for r in rows} >= {
        ("slack", "delivered"), ("jira", "delivered"), ("email", "delivered")}
    assert "Approval Requested" in json.dumps(slack.messages())
    assert [i["fields"]["summary"] for i in jira.issues()] == [
        "[production] Approval requested: app.database.host"]
    assert smtp.wait_for_messages(1)
    # When the requester approves it, then it is refused: they are no approver
    with pytest.raises(ApprovalDenied):
        await service.approve(result.request_id, approver=REQUESTER)
    # When one approver approves twice, then it counts once and still waits
    await service.approve(result.request_id, approver=DBA)
    again = await service.approve(result.request_id, approver=DBA)
    assert again["status"] == "pending" and len(again["decisions"]) == 1
    # When the second approver agrees, then the change is applied as the requester's
    done = await service.approve(result.request_id, approver=PLATFORM)
    assert done["status"] == "approved"
    assert await service.get_config("app.database.host") == "prod-db.internal"
    assert (await service.history("app.database.host"))[0]["changed_by"] == REQUESTER


async def test_approval_snippet__approver_asks__cannot_approve_own_request(
        service: ConfigService, run: Run,
        approval_fakes: tuple[FakeSlack, FakeJira, FakeSMTP]) -> None:
    # Given the guide's approval workflow, and a request made by one of the approvers
    await configure_approvals(run, approval_fakes)
    result = await service.set_config("app.database.port", 5433, changed_by=DBA)
    # When that approver approves it / Then it is refused, and nothing is decided
    with pytest.raises(ApprovalDenied):
        await service.approve(result.request_id or "", approver=DBA)
    request = await service.approval(result.request_id or "")
    assert (request["status"], request["decisions"]) == ("pending", [])


async def test_approval_snippet__key_changed_since_request__approval_reports_conflict(
        service: ConfigService, run: Run,
        approval_fakes: tuple[FakeSlack, FakeJira, FakeSMTP]) -> None:
    # Given the guide's approval workflow and two requests for the same key
    await configure_approvals(run, approval_fakes)
    first = await service.set_config("app.database.user", "alice", changed_by=REQUESTER)
    second = await service.set_config("app.database.user", "bob", changed_by=REQUESTER)
    # When the second is approved (and applied), then the first
    for approver in (DBA, PLATFORM):
        await service.approve(second.request_id or "", approver=approver)
    await service.approve(first.request_id or "", approver=DBA)
    late = await service.approve(first.request_id or "", approver=PLATFORM)
    # Then the first ends conflicted and overwrites nothing
    assert late["status"] == "conflicted"
    assert await service.get_config("app.database.user") == "bob"


async def test_approval_snippet__nobody_decides__expired_by_the_worker(
        service: ConfigService, run: Run, guide_redis: str,
        approval_fakes: tuple[FakeSlack, FakeJira, FakeSMTP]) -> None:
    # Given the guide's approval workflow, its security timeout cut to 2 s by the script
    await configure_approvals(run, approval_fakes, (
        'approval_config["required_approvals"]["*.security.*"]["timeout"] = 2\n'
        'await service.set_config("integrations.approvals", approval_config)\n'))
    # When a security key is changed and nobody decides
    result = await service.set_config("app.security.mode", "strict", changed_by=REQUESTER)
    # Then the worker's sweep expires it (read from Redis: reading through the service would
    # expire it itself), and approval.decided reaches the methods
    raw = redis.Redis.from_url(guide_redis, decode_responses=True)
    key = approval_state.request_key(service.namespace, result.request_id or "")
    deadline = time.monotonic() + 20
    while raw.hget(key, "status") == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert raw.hget(key, "status") == "expired"
    rows = await wait_for_deliveries(service, raw.hget(key, "decided_event_id") or "", FINISHED)
    assert ("slack", "delivered") in {(r["connector"], r["status"]) for r in rows}
    assert await service.get_config("app.security.mode", None) is None
    raw.close()


# --- secrets and rotation ------------------------------------------------------------------

@pytest.fixture
def zendesk_fake() -> Iterator[FakeZendesk]:
    with FakeZendesk(email="admin@yourcompany.com", api_token=ENV_TOKEN) as fake:
        yield fake


def tickets_of(fake: FakeZendesk, key: str) -> list[dict[str, Any]]:
    return [t for t in fake.tickets() if t["subject"] == f"Configuration Change: {key}"]


def delivered_to(name: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``done`` predicate: ``name``'s delivery succeeded (others may still be retrying)."""
    return lambda rows: any(r["connector"] == name and r["status"] == "delivered" for r in rows)


def deliver_a_change(base_url: str) -> str:
    """The part a reader adds after a zendesk snippet: where Zendesk is, and a change."""
    return (f'zendesk_config.update(base_url={base_url!r}, ticket_all_changes=True)\n'
            'await service.set_config("integrations.zendesk", zendesk_config)\n'
            'result = await service.set_config("app.database.host", "prod-db.internal")\n'
            'print(json.dumps(result.event_id))\n')


async def test_security_snippet__os_getenv__literal_token_stored_masked_and_delivered(
        service: ConfigService, run: Run, zendesk_fake: FakeZendesk,
        guide_worker: WorkerProcess) -> None:
    # Given the guide's os.getenv pattern, ZENDESK_API_TOKEN set for the script
    code = snippet("Security", 0)
    # When the script stores that config and changes a key
    outcome = succeeded(run(code, deliver_a_change(zendesk_fake.base_url),
                            ZENDESK_API_TOKEN=ENV_TOKEN))
    # Then the worker tickets the change with that token
    await wait_for_deliveries(service, outcome.last_json(), all_in("delivered"))
    assert len(tickets_of(zendesk_fake, "app.database.host")) == 1
    assert zendesk_fake.auth_refusals == 0
    # And the token itself is what is stored: shown masked, revealed only on request
    assert await service.get_config("integrations.zendesk.api_token") == "***"
    assert await service.get_config("integrations.zendesk.api_token", reveal=True) == ENV_TOKEN
    assert ENV_TOKEN not in json.dumps(await service.history("integrations.zendesk"))
    assert ENV_TOKEN not in guide_worker.log()


async def test_readme_secrets_snippet__env_reference__resolved_only_in_the_worker(
        service: ConfigService, run: Run, zendesk_fake: FakeZendesk) -> None:
    # Given the README's recommended form, ${env:ZENDESK_API_TOKEN}, and a script without
    # that variable (only the worker has it)
    code = snippet("Secrets", path=README)
    assert "${env:ZENDESK_API_TOKEN}" in code
    # When the script stores it as written, then says where Zendesk is and changes a key
    outcome = succeeded(run(code, (
        f'await service.set_config("integrations.zendesk.base_url", {zendesk_fake.base_url!r})\n'
        'await service.set_config("integrations.zendesk.ticket_all_changes", True)\n'
        'result = await service.set_config("app.database.host", "prod-db.internal")\n'
        'print(json.dumps(result.event_id))\n')))
    # Then the worker resolves the reference and the ticket is made with the token
    await wait_for_deliveries(service, outcome.last_json(), all_in("delivered"))
    assert len(tickets_of(zendesk_fake, "app.database.host")) == 1
    assert zendesk_fake.auth_refusals == 0
    # And Redis holds the reference, never the token
    assert await service.get_config("integrations.zendesk.api_token", reveal=True) == (
        "${env:ZENDESK_API_TOKEN}")


ROTATED = {"zendesk": "zd-rotated-51a0", "newrelic": "nr-rotated-9b2c",
           "github": "ghp_rotated-3d7e"}


async def test_rotation_snippet__guide_loop_over_connectors__every_secret_switched_masked(
        service: ConfigService, run: Run, guide_worker: WorkerProcess) -> None:
    # Given zendesk, newrelic and github configured by their guide snippets, zendesk at a fake
    # that accepts the old token and the one the loop will generate (the overlap)
    with FakeZendesk(email="admin@yourcompany.com", api_token="your-api-token") as zendesk:
        zendesk.accept_tokens("your-api-token", ROTATED["zendesk"])
        zendesk.add_agent("platform-team@yourcompany.com")
        setup = [snippet("Zendesk Integration"), snippet("New Relic Integration"),
                 snippet("GitHub Integration"), deliver_a_change(zendesk.base_url)]
        # When the guide's rotate_api_keys() runs, with the reader's generate_new_api_key
        outcome = succeeded(run(*setup, snippet("Security", 1), (
            f"async def generate_new_api_key(connector):\n    return {ROTATED!r}[connector]\n"
            "await rotate_api_keys()\n"
            'result = await service.set_config("app.database.host", "prod-db-2.internal")\n'
            'print(json.dumps(result.event_id))\n')))
        # Then each connector's own secret field holds the new key, read by either name
        for name, field in (("zendesk", "api_token"), ("newrelic", "api_key"),
                            ("github", "token")):
            for alias in (field, "api_key"):
                got = await service.get_config(f"integrations.{name}.{alias}", reveal=True)
                assert got == ROTATED[name], (name, alias)
        # And the change after the rotation is ticketed with the new token, then the vendor
        # retires the old one and deliveries go on
        await wait_for_deliveries(service, outcome.last_json(), delivered_to("zendesk"))
        zendesk.accept_tokens(ROTATED["zendesk"])
        last = await service.set_config("app.database.host", "prod-db-3.internal")
        await wait_for_deliveries(service, last.event_id or "", delivered_to("zendesk"))
        assert zendesk.auth_refusals == 0
    # And each rotation is a masked security.secret_rotated in history, no key shown anywhere
    history = await service.history("integrations.github.api_key")
    assert history[0]["value"]["token"] == "***"
    shown = json.dumps([await service.history(f"integrations.{n}") for n in ROTATED])
    for key in ROTATED.values():
        assert key not in shown and key not in guide_worker.log()


# --- custom connectors ----------------------------------------------------------------------

async def test_custom_connector_snippet__pasted_into_a_script_in_eager_mode__delivers(
        run: Run) -> None:
    # Given the guide's custom connector pasted into a script, in eager mode, and the system
    # it talks to (on loopback, accepting the snippet's key)
    with FakeCustomSystem("your-api-key") as system:
        # When the script registers it, then points it at the system and changes a key
        outcome = succeeded(run(snippet("Creating Custom Connectors"), (
            f'connector = CustomSystemConnector({{"api_url": {system.base_url!r}, '
            '"api_key": "your-api-key"})\n'
            'await service.register_connector("custom_system", connector)\n'
            'result = await service.set_config("app.database.host", "prod-db.internal")\n'
            'print(json.dumps(await service.get_deliveries(result.event_id)))\n'),
            CELERY_TASK_ALWAYS_EAGER="1"))
        # Then the class from __main__ delivered the change, with the bearer key
        [row] = [r for r in outcome.last_json() if r["connector"] == "custom_system"]
        assert row["status"] == "delivered"
        keys = [body["data"]["key"] for body in system.messages()]
        assert keys.count("app.database.host") == 1


def test_custom_connector_snippet__pasted_into_a_script_for_workers__clear_refusal(
        run: Run) -> None:
    # Given the guide's custom connector pasted into a script, with real workers to deliver
    # When the script registers it
    outcome = run(snippet("Creating Custom Connectors"))
    # Then it stops with a message saying why and what to do
    assert outcome.returncode != 0
    assert "CustomSystemConnector" in outcome.stderr
    assert "importable module" in outcome.stderr
    assert "CELERY_TASK_ALWAYS_EAGER=1" in outcome.stderr


# --- error handling -------------------------------------------------------------------------

async def test_error_handling_snippet__outbox_full__falls_back_to_a_local_only_change(
        quiet_service: ConfigService, run_quiet: Run) -> None:
    # Given an outbox over its limit (no worker drains this database)
    await quiet_service.set_config("integrations.max_backlog", 1)
    # When the guide's error-handling snippet runs as pasted
    outcome = succeeded(run_quiet(snippet("Error Handling")))
    # Then set_config raised IntegrationError, the snippet logged it and applied locally
    assert "Integration failed:" in outcome.stderr
    assert await quiet_service.get_config("app.database.host") == "new-host"
    [entry] = await quiet_service.history("app.database.host")
    assert entry["local_only"] is True


# --- troubleshooting ------------------------------------------------------------------------

async def test_rate_limiting_snippet__vendor_answers_429_once__backoff_retries_and_sends(
        run_quiet: Run) -> None:
    # Given Slack configured by the guide's snippet, at a fake that answers the next call 429
    with FakeSlack() as slack:
        hook = slack.add_webhook()
        slack.fail_next(429, webhook_url=hook, retry_after_s=1)
        # When the guide's call_api_with_backoff sends through the configured connector,
        # RateLimitError imported from where the guide imports BaseConnector
        outcome = succeeded(run_quiet(
            snippet("Slack Integration"),
            f'await service.set_config("integrations.slack.webhook_url", {hook!r})\n'
            "from capabilities.composition.central_configuration.integrations"
            ".enterprise_connectors import RateLimitError\n",
            snippet("Rate Limiting"),
            'connector = await service.get_connector("slack")\n'
            'event = {"event_id": "e1", "type": "config.changed", "key": "app.cache.ttl",\n'
            '         "old_value": 60, "new_value": 120, "changed_by": "admin@company.com",\n'
            '         "environment": "production", "timestamp": "2025-01-01T14:30:00+00:00"}\n'
            "await call_api_with_backoff(lambda: connector.send_notification(event))\n"
            'print(json.dumps("sent"))\n'))
        # Then the 429 was caught as RateLimitError and the second attempt was posted
        assert outcome.last_json() == "sent"
        assert len(slack.requests) == 2
        [message] = slack.messages(hook)
        assert "app.cache.ttl" in json.dumps(message)


def test_webhook_failures_snippet__one_503__retried_and_posted(run_quiet: Run) -> None:
    # Given a Slack webhook that answers the next post 503
    with FakeSlack() as slack:
        hook = slack.add_webhook()
        slack.fail_next(503, webhook_url=hook)
        # When the guide's send_webhook_with_retry posts to it, as pasted
        outcome = succeeded(run_quiet(snippet("Webhook Failures"), (
            f'ok = await send_webhook_with_retry({hook!r}, {{"text": "Configuration Changed"}})\n'
            "print(json.dumps(ok))\n")))
        # Then it tried again and the second attempt was accepted: one message posted
        assert outcome.last_json() is True
        assert len(slack.requests) == 2 and len(slack.messages(hook)) == 1


# --- multi-environment sync and health --------------------------------------------------------

def test_multi_env_sync_snippet__pasted__stored_as_written_and_keys_masked(
        run_quiet: Run) -> None:
    # Given the guide's multi-environment sync snippet, as pasted
    code = snippet("Multi-Environment Sync")
    # When a script runs it, then reads the section back revealed and as anyone sees it
    outcome = succeeded(run_quiet(code, stored_as_written(code), "print(json.dumps(await "
                                  "service.get_config('integrations.multi_env_sync')))\n"))
    stored, written = json.loads(outcome.stdout.strip().splitlines()[-2])
    masked = outcome.last_json()
    # Then it is stored as written, and each environment's api_key is shown masked
    assert stored == written
    assert {name: env["api_key"] for name, env in masked["environments"].items()} == {
        "staging": "***", "production": "***"}
    assert masked["sync_interval"] == 300 and masked["conflict_resolution"] == "manual"


HEALTH_REPORT = "print(json.dumps(await check_integration_health()))\n"
"""What a reader adds after the guide's health function: call it."""


async def test_health_snippet__posts_refused_while_the_webhook_answers__discord_unhealthy(
        service: ConfigService, run: Run, guide_worker: WorkerProcess) -> None:
    # Given Discord configured with a valid webhook, and a change delivered
    fake = FakeDiscord().start()
    try:
        hook = fake.add_webhook()
        await service.set_config("integrations.discord", {"webhook_url": hook})
        first = await service.set_config("app.health.k0", 0)
        await wait_for_deliveries(service, first.event_id, all_in("delivered"))
        code = snippet("Monitoring Integration Health")
        # When the guide's function runs
        before = succeeded(run(code, HEALTH_REPORT)).last_json()
        # Then Discord is healthy; connectors not configured are errors that say so
        assert before["discord"]["status"] == "healthy" and before["discord"]["last_check"]
        assert before["zendesk"]["status"] == "error" and "zendesk" in before["zendesk"]["error"]
        # When Discord refuses the next three posts (its webhook still answers a GET)
        fake.fail_next(400, times=3, method="POST")
        for i in range(1, 4):
            result = await service.set_config(f"app.health.k{i}", i)
            await wait_for_deliveries(service, result.event_id, all_in("dead"))
        after = run(code, HEALTH_REPORT)
        # Then the same function reports Discord unhealthy, from its delivery history
        assert succeeded(after).last_json()["discord"]["status"] == "unhealthy"
        assert hook.rsplit("/", 1)[-1] not in after.stdout + after.stderr
    finally:
        fake.stop()
