"""The e-mail connector against a loopback SMTP relay: TLS, AUTH, error mapping, health, and
delivery through the service in eager mode."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from config_core import ConfigService
from connectors.email import EmailConnector
from connectors.errors import (
    AuthError,
    BlockedDestination,
    ConnectorError,
    Misconfigured,
    PermanentError,
    RateLimited,
    Rejected,
    RetryableError,
    TransportError,
    Unavailable,
)
from tests.fakes.blackhole import BlackHole
from tests.fakes.smtp import FakeSMTP, trust_env
from tests.unit.samples import make_event

USERNAME = "apg-mailer"
PASSWORD = "smtp-pw-9f3b2c1a-must-not-leak"


@pytest.fixture(autouse=True)
def trust_fake_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients trust the fakes' self-signed certificate (as with a private CA)."""
    for name, value in trust_env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def relay() -> Iterator[FakeSMTP]:
    """A submission relay: STARTTLS required, then AUTH required."""
    with FakeSMTP(security="starttls", username=USERNAME, password=PASSWORD) as fake:
        yield fake


def connector(config: dict[str, Any]) -> EmailConnector:
    built = EmailConnector.from_stored("email", EmailConnector.validate_config(config))
    assert isinstance(built, EmailConnector)
    return built


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_send__starttls_relay__one_message_over_tls_after_login(relay: FakeSMTP) -> None:
    # Given a relay that refuses mail before STARTTLS and AUTH
    event = make_event()

    # When the connector sends an event
    result = connector(relay.config()).send_notification(event)

    # Then one message arrived, over TLS, logged in, to every recipient
    [received] = relay.received()
    assert received.tls and received.login == USERNAME
    assert received.mail_from == "apg-config@company.com"
    assert received.rcpt_tos == ["platform-team@company.com"]
    assert received.message["X-APG-Event-Id"] == event["event_id"]
    assert result["message_id"] == received.message["Message-ID"]
    assert PASSWORD.encode() not in received.data


def test_send__implicit_tls_relay__message_over_tls() -> None:
    with FakeSMTP(security="tls", username=USERNAME, password=PASSWORD) as fake:
        connector(fake.config()).send_notification(make_event())
        [received] = fake.received()
        assert received.tls and received.login == USERNAME


def test_send__relay_offers_no_starttls__misconfigured_nothing_sent_in_clear() -> None:
    # Given a plain relay, and a config that asks for STARTTLS
    with FakeSMTP(security="none", username=USERNAME, password=PASSWORD) as fake:
        # When the connector sends / Then it refuses to go on without TLS
        with pytest.raises(Misconfigured, match="STARTTLS"):
            connector(fake.config(security="starttls")).send_notification(make_event())
        assert fake.received() == [] and fake.auth_attempts == 0


def test_send__untrusted_certificate__transport_error(
        relay: FakeSMTP, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a client that does not trust the relay's certificate
    monkeypatch.delenv("SSL_CERT_FILE")
    # Then the TLS handshake fails and nothing was sent or logged in
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        connector(relay.config()).send_notification(make_event())
    assert relay.received() == [] and relay.auth_attempts == 0


@pytest.mark.parametrize(("command", "code", "expected"), [
    ("RCPT", 421, Unavailable), ("RCPT", 450, Unavailable), ("MAIL", 451, Unavailable),
    ("RCPT", 452, Unavailable), ("AUTH", 454, Unavailable),
    ("RCPT", 550, Rejected), ("RCPT", 553, Rejected), ("DATA", 554, Rejected),
    ("MAIL", 550, Rejected), ("AUTH", 535, AuthError),
])
def test_send__relay_replies_error__typed_error_without_password(
        relay: FakeSMTP, command: str, code: int, expected: type[ConnectorError]) -> None:
    # Given a relay that answers one command with an error reply
    relay.fail_next(code, command=command)

    # When the connector sends
    with pytest.raises(ConnectorError) as caught:
        connector(relay.config()).send_notification(make_event())

    # Then the error has the reply's type and code, 4xx retryable, 5xx permanent
    assert type(caught.value) is expected and caught.value.status == code
    assert isinstance(caught.value, RetryableError if code < 500 else PermanentError)
    assert str(code) in str(caught.value) and PASSWORD not in str(caught.value)
    assert relay.received() == []


def test_send__wrong_password__auth_error_without_either_password(relay: FakeSMTP) -> None:
    wrong = "wrong-pw-0c7d1e5f-also-secret"
    with pytest.raises(AuthError) as caught:
        connector(relay.config(password=wrong)).send_notification(make_event())
    assert caught.value.status == 535
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    assert relay.received() == []


def test_send__rate_limited_reply_naming_a_wait__rate_limited_with_that_wait(
        relay: FakeSMTP) -> None:
    relay.fail_next(451, command="RCPT", text="4.7.1 Rate limit exceeded, try again in 2 minutes")
    with pytest.raises(RateLimited) as caught:
        connector(relay.config()).send_notification(make_event())
    assert caught.value.retry_after_s == 120


def test_send__one_recipient_refused__nothing_sent_to_anyone(relay: FakeSMTP) -> None:
    # Given two recipients, and a relay that refuses the second
    config = relay.config(to=["platform-team@company.com", "gone@company.com"])
    relay.fail_next(550, command="RCPT", address="gone@company.com")

    # When the connector sends
    with pytest.raises(Rejected, match="550"):
        connector(config).send_notification(make_event())

    # Then no copy went out (a retry could not send the first one a duplicate)
    assert relay.received() == []


def test_send__nothing_listening__transport_error() -> None:
    with FakeSMTP() as fake:
        config = fake.config(port=free_port())
    with pytest.raises(TransportError, match=r"Connection refused|ConnectionRefused"):
        connector(config).send_notification(make_event())


def test_send__relay_never_greets__transport_error_within_timeout() -> None:
    # Given a server that accepts connections and says nothing
    with BlackHole() as hole, FakeSMTP() as fake:
        config = fake.config(port=hole.port, timeout_s=0.3)
        # Then the connector gives up after its timeout, with a retryable error
        with pytest.raises(TransportError, match="timed out"):
            connector(config).send_notification(make_event())


def test_send__internal_host_no_longer_allowed__blocked_before_connecting(
        relay: FakeSMTP, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a config stored while the allow-list permitted the loopback relay
    built = connector(relay.config())
    # When the allow-list no longer does
    monkeypatch.delenv("APGCFG_ALLOWED_NETWORKS")
    # Then the worker refuses to connect
    with pytest.raises(BlockedDestination, match=r"127\.0\.0\.1"):
        built.send_notification(make_event())
    assert relay.received() == [] and relay.auth_attempts == 0


def test_health_check__relay_accepts_login__true_and_nothing_sent(relay: FakeSMTP) -> None:
    assert connector(relay.config()).health_check() is True
    assert relay.received() == [] and relay.auth_attempts == 1


@pytest.mark.parametrize("overrides", [{"password": "wrong-password"}, {"port": 1},
                                       {"security": "tls"}])
def test_health_check__login_fails_or_no_relay__false(relay: FakeSMTP,
                                                      overrides: dict[str, Any]) -> None:
    config = relay.config(**overrides)
    if overrides.get("port") == 1:
        config["port"] = free_port()
    assert connector(config).health_check() is False


# through the service, eager mode ------------------------------------------------------------


async def test_deliver__eager_change__one_message_and_ledger_delivered(
        service: ConfigService, relay: FakeSMTP) -> None:
    # Given the e-mail connector configured as one dict
    await service.set_config("integrations.email", relay.config())

    # When a key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com")

    # Then exactly one message names that event, and the ledger says delivered
    mine = [m for m in relay.messages() if m["X-APG-Event-Id"] == result.event_id]
    assert len(mine) == 1
    assert "New Value: prod-db.internal" in mine[0].get_content()
    [record] = await service.get_deliveries(result.event_id)
    assert (record["connector"], record["status"], record["attempts"]) == (
        "email", "delivered", 1)
    assert all(PASSWORD.encode() not in item.data for item in relay.received())


async def test_deliver__eager_recipient_refused__dead_at_once_without_password(
        service: ConfigService, relay: FakeSMTP) -> None:
    await service.set_config("integrations.email", relay.config())
    relay.fail_next(550, command="RCPT")
    result = await service.set_config("app.x", 1)
    [record] = await service.get_deliveries(result.event_id)
    assert (record["status"], record["attempts"]) == ("dead", 1)
    assert "550" in record["last_error"] and PASSWORD not in record["last_error"]
