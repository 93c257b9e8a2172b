"""One contract over every built-in connector: declared settings, masking, error mapping."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors import AuthError, BaseConnector, RateLimited, registry
from connectors.identity import IdentityConnector
from tests.fakes.auth0 import FakeAuth0
from tests.fakes.azure_ad import FakeAzureAD
from tests.fakes.discord import FakeDiscord
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.jira import FakeJira
from tests.fakes.new_relic import FakeNewRelic
from tests.fakes.okta import FakeOkta
from tests.fakes.server import ServerBase
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSMTP
from tests.fakes.splunk import FakeSplunk
from tests.fakes.zendesk import FakeZendesk
from tests.unit.samples import make_event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"

EVENT = make_event()

FAKES: dict[str, tuple[Callable[[], ServerBase | FakeSMTP], Callable[[Any], dict[str, Any]]]] = {
    "discord": (FakeDiscord, lambda fake: {"webhook_url": fake.add_webhook()}),
    "slack": (FakeSlack, lambda fake: {"webhook_url": fake.add_webhook()}),
    "zendesk": (FakeZendesk, lambda fake: {"base_url": fake.base_url, "email": fake.email,
                                           "api_token": fake.api_token,
                                           "ticket_all_changes": True}),
    "github": (FakeGitHub, lambda fake: {
        "token": fake.token, "api_url": fake.base_url, "auto_create_issues": True,
        "repositories": {"config-tracking": fake.add_repo("company/config-tracking")}}),
    "jenkins": (FakeJenkins, lambda fake: fake.config()),
    "jira": (FakeJira, lambda fake: {"server_url": fake.base_url, "username": fake.username,
                                     "api_token": fake.api_token, "default_project": "CONFIG"}),
    "gitlab": (FakeGitLab, lambda fake: {"base_url": fake.base_url, "token": fake.token,
                                         "project_id": fake.add_project(),
                                         "auto_create_mrs": True}),
    "okta": (FakeOkta, lambda fake: {"domain": "yourcompany.okta.com", "api_token": fake.token,
                                     "base_url": fake.base_url,
                                     "group_mappings": {"Development Team": "write"}}),
    "azure_ad": (FakeAzureAD, lambda fake: {"tenant_id": fake.tenant_id,
                                            "client_id": fake.client_id,
                                            "client_secret": fake.client_secret,
                                            "group_filter": "startswith(displayName,'APG_')",
                                            "authority_url": fake.base_url,
                                            "graph_url": fake.base_url}),
    "auth0": (FakeAuth0, lambda fake: {"domain": "yourcompany.auth0.com",
                                       "client_id": fake.client_id,
                                       "client_secret": fake.client_secret,
                                       "role_mappings": {"admin": "admin", "developer": "write",
                                                         "viewer": "read"},
                                       "base_url": fake.base_url}),
    "newrelic": (FakeNewRelic, lambda fake: {"account_id": fake.account_id,
                                             "api_key": fake.api_key,
                                             "base_url": fake.base_url}),
    "splunk": (FakeSplunk, lambda fake: {"hec_url": fake.hec_url, "hec_token": fake.token}),
    # SMTP has no 401/429: the fake answers AUTH with 535 and RCPT with a rate-limiting 450
    # that names its wait (plain SMTP here; STARTTLS is covered in test_email_smtp.py).
    "email": (functools.partial(FakeSMTP, username="apg-mailer", password="smtp-secret-pw"),
              lambda fake: fake.config()),
}
"""Every built-in connector, the fake of its vendor, and a minimal config against that fake."""

BUILTINS = sorted(registry.BUILTIN)
IDENTITY = [n for n in BUILTINS if issubclass(registry.load(registry.BUILTIN[n]),
                                              IdentityConnector)]


def test_contract__every_builtin_connector__has_a_fake_here() -> None:
    assert sorted(FAKES) == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_settings__declared__named_typed_and_documented(name: str) -> None:
    # Given the connector class / Then its settings are data, and docs list each one
    cls = registry.builtin_class(name)
    assert cls is not None and cls.name == name and cls.settings
    section = DOCS.read_text().split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
    for setting in cls.settings:
        row = re.search(rf"^\| `{setting.name}` \| (yes|no) \| (yes|no) \|", section, re.M)
        assert row, f"docs/connectors.md lacks a row for {name}.{setting.name}"
        assert row.groups() == ("yes" if setting.required else "no",
                                "yes" if setting.secret else "no")
    assert any(s.secret for s in cls.settings), "a vendor credential must be declared secret"


@pytest.mark.parametrize("name", BUILTINS)
def test_repr__configured__secrets_masked(name: str) -> None:
    fake_cls, make_config = FAKES[name]
    with fake_cls() as fake:
        connector = _build(name, make_config(fake))
        for secret in connector.secrets():
            assert secret not in repr(connector)
            assert secret.rsplit("/", 1)[-1] not in repr(connector)


@pytest.mark.parametrize("name", BUILTINS)
def test_send__vendor_answers_401__auth_error_without_secret(name: str) -> None:
    fake_cls, make_config = FAKES[name]
    with fake_cls() as fake:
        connector = _build(name, make_config(fake))
        fake.fail_next(401)
        with pytest.raises(AuthError) as caught:
            act(connector)
        assert all(secret not in str(caught.value) for secret in connector.secrets())


@pytest.mark.parametrize("name", BUILTINS)
def test_send__vendor_answers_429__rate_limited_with_vendor_wait(name: str) -> None:
    fake_cls, make_config = FAKES[name]
    with fake_cls() as fake:
        connector = _build(name, make_config(fake))
        fake.fail_next(429, retry_after_s=7)
        with pytest.raises(RateLimited) as caught:
            act(connector)
        assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 7


@pytest.mark.parametrize("name", [n for n in BUILTINS if n not in IDENTITY])
def test_send__vendor_accepts__message_recorded(name: str) -> None:
    fake_cls, make_config = FAKES[name]
    with fake_cls() as fake:
        _build(name, make_config(fake)).send_notification(EVENT)
        assert len(fake.messages()) == 1


@pytest.mark.parametrize("name", IDENTITY)
def test_directory__vendor_answers__users_with_valid_roles(name: str) -> None:
    fake_cls, make_config = FAKES[name]
    with fake_cls() as fake:
        users = _build(name, make_config(fake)).directory()  # type: ignore[attr-defined]
        assert users and all(u.role in (None, "read", "write", "admin") for u in users)
        assert all(u.role is None for u in users if not u.active)


def act(connector: BaseConnector) -> Any:
    """What the connector does for a living: deliver an event, or read a directory."""
    if isinstance(connector, IdentityConnector):
        return connector.directory()
    return connector.send_notification(EVENT)


def _build(name: str, config: dict[str, Any]) -> BaseConnector:
    cls = registry.builtin_class(name)
    assert cls is not None
    cls.validate_config(config)
    return cls.from_stored(name, config)
