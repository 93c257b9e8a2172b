"""E-mail message builder and settings: pure tests, no network."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from config_core.errors import ConfigError
from connectors.email import EmailConnector, build_message
from tests.unit.samples import GUIDE_FIELDS, make_event

PASSWORD = "smtp-password-that-must-not-leak"


def make_config(**overrides: Any) -> dict[str, Any]:
    config = {"host": "smtp.company.com", "from_address": "apg-config@company.com",
              "to": ["platform-team@company.com", "dba-team@company.com"],
              "username": "apg", "password": PASSWORD}
    config.update(overrides)
    return EmailConnector.validate_config(config)


def on_the_wire(message: EmailMessage) -> EmailMessage:
    """``message`` as a receiving server parses the bytes it was sent."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_build_message__config_changed__guide_body_subject_and_ids() -> None:
    # Given the guide's example change
    event = make_event()

    # When its message is built and sent as bytes
    message = on_the_wire(build_message(event, make_config()))

    # Then subject, addresses, ids and the body read like the guide's notification
    assert message["Subject"] == ("[APG Config] Configuration Changed: app.database.host "
                                  "(production)")
    assert message["From"] == "apg-config@company.com"
    assert message["To"] == "platform-team@company.com, dba-team@company.com"
    assert message["Message-ID"] == f"<apgcfg.{event['event_id']}@company.com>"
    assert message["X-APG-Event-Id"] == event["event_id"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Wed, 01 Jan 2025 14:30:00 +0000"
    lines = message.get_content().splitlines()
    assert lines[:7] == [
        "🔧 Configuration Changed", "Key: app.database.host", "Old Value: localhost",
        "New Value: prod-db.internal", "Changed By: admin@company.com",
        "Environment: production", "Time: 2025-01-01 14:30:00 UTC"]
    assert [line.split(":")[0] for line in lines[1:7]] == GUIDE_FIELDS
    assert PASSWORD not in message.as_string()


def test_build_message__same_event_twice__same_message_id() -> None:
    # Given one event built twice (a retry) and another event
    first, again = build_message(make_event(), make_config()), build_message(make_event(),
                                                                             make_config())
    other = build_message(make_event(event_id="1" * 32), make_config())
    # Then a receiving server sees the retry as the same message, the other as new
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]


def test_build_message__event_id_with_odd_characters__message_id_still_valid() -> None:
    # Given an event id that a Message-ID could not hold
    message = on_the_wire(build_message(make_event(event_id="a b>\r\nBcc: x@evil.test"),
                                        make_config()))
    # Then the Message-ID is a digest, and no header was injected
    assert message["Message-ID"].startswith("<apgcfg.") and " " not in message["Message-ID"]
    assert message["Bcc"] is None


@pytest.mark.parametrize("field", ["key", "environment", "event_id"])
def test_build_message__crlf_in_event_text__no_header_injected(field: str) -> None:
    # Given event text that tries to start a header of its own
    event = make_event(**{field: "app.x\r\nBcc: victim@evil.test\nX-Injected: 1"})

    # When the message is built and parsed back
    message = on_the_wire(build_message(event, make_config()))

    # Then no extra header exists and every header value is one line
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert all("\n" not in str(value) and "\r" not in str(value)
               for value in message.values())


def test_build_message__multiline_value__continuation_cannot_pose_as_a_field() -> None:
    # Given a value whose second line imitates a field
    event = make_event(new_value="line one\nChanged By: someone-else@evil.test")
    # When the body is built
    lines = on_the_wire(build_message(event, make_config())).get_content().splitlines()
    # Then the continuation is indented, and Changed By appears once, at line start
    assert "New Value: line one" in lines
    assert "  Changed By: someone-else@evil.test" in lines
    assert [line for line in lines if line.startswith("Changed By:")] == [
        "Changed By: admin@company.com"]


def test_build_message__non_ascii_values__decoded_unchanged() -> None:
    # Given values, a key and an environment outside ASCII
    event = make_event(key="app.städte.name", new_value="Zürich ✓ 東京",
                       environment="prüfung")
    # When the message goes out as 7-bit bytes and is parsed back
    raw = build_message(event, make_config()).as_bytes()
    message = on_the_wire(build_message(event, make_config()))
    # Then the wire is ASCII and the reader sees the text as written
    assert raw.isascii()
    assert "New Value: Zürich ✓ 東京" in message.get_content()
    assert message["Subject"].endswith("app.städte.name (prüfung)")


def test_build_message__reason_given__reason_line_after_time() -> None:
    lines = build_message(make_event(reason="database migration"),
                          make_config()).get_content().splitlines()
    assert lines[7] == "Reason: database migration"


def test_build_message__subject_prefix_set__used() -> None:
    message = build_message(make_event(), make_config(subject_prefix="[prod]"))
    assert str(message["Subject"]).startswith("[prod] Configuration Changed")


# settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "not-an-address", "ops@company", "ops @company.com", "Ops <ops@company.com>",
    "ops@company.com\r\nBcc: victim@evil.test", "ops@company.com, other@company.com",
    "öps@company.com",
])
def test_validate__bad_address__config_error_naming_the_field(address: str) -> None:
    # Given a config with a bad sender, or a bad recipient
    with pytest.raises(ConfigError, match=r"integrations\.email\.from_address"):
        make_config(from_address=address)
    with pytest.raises(ConfigError, match=r"integrations\.email\.to"):
        make_config(to=["ok@company.com", address])


def test_validate__empty_recipient_list__refused() -> None:
    with pytest.raises(ConfigError, match=r"integrations\.email\.to must list"):
        make_config(to=[])


@pytest.mark.parametrize("field", ["subject_prefix", "username", "host"])
def test_validate__line_break_in_header_setting__refused(field: str) -> None:
    # Given a setting that would end a header early
    with pytest.raises(ConfigError, match=rf"integrations\.email\.{field}"):
        make_config(**{field: "[APG]\r\nBcc: victim@evil.test"})


@pytest.mark.parametrize("security", ["ssl", "STARTTLS", "plain", ""])
def test_validate__unknown_security__refused(security: str) -> None:
    with pytest.raises(ConfigError, match=r"integrations\.email\.security must be one of"):
        make_config(security=security)


@pytest.mark.parametrize("host", ["smtp://smtp.company.com", "smtp.company.com:587",
                                  "smtp.company.com/x", "-bad.company.com"])
def test_validate__host_not_a_host_name__refused(host: str) -> None:
    with pytest.raises(ConfigError, match=r"integrations\.email\.host must be a host name"):
        make_config(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.0.0.5", "169.254.169.254"])
def test_validate__internal_host_without_allow_list__refused(
        host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no allow-list
    monkeypatch.delenv("APGCFG_ALLOWED_NETWORKS", raising=False)
    # Then an internal relay is refused, as an internal webhook URL is
    with pytest.raises(ConfigError, match="APGCFG_ALLOWED_NETWORKS"):
        make_config(host=host)


def test_validate__plain_smtp_to_public_host__refused() -> None:
    with pytest.raises(ConfigError, match=r"security 'none' .* allowed only for internal"):
        make_config(security="none")


def test_validate__plain_smtp_to_allowed_internal_host__accepted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APGCFG_ALLOWED_NETWORKS", "10.20.0.0/16,relay.corp.internal")
    assert make_config(host="10.20.0.5", security="none", port=25)["security"] == "none"
    assert make_config(host="relay.corp.internal", security="none")["port"] == 587


def test_validate__field_written_alone__plain_smtp_still_checked_against_host() -> None:
    # Given a stored config for a public host, and security written on its own later
    stored = {"host": "smtp.company.com", "security": "none"}
    # Then the merged config is refused (the service validates it as partial)
    with pytest.raises(ConfigError, match="security 'none'"):
        EmailConnector.validate_config(stored, partial=True)


def test_defaults__minimal_config__starttls_587_prefix_timeout() -> None:
    config = make_config()
    assert (config["port"], config["security"], config["subject_prefix"],
            config["timeout_s"]) == (587, "starttls", "[APG Config]", 10.0)


def test_connector__declared__not_resent_after_unknown_outcome() -> None:
    # A message whose sending attempt died may have been accepted: never sent twice
    assert EmailConnector.retry_unknown_outcome is False
    assert EmailConnector.secret_fields() == frozenset({"password"})
    assert PASSWORD not in repr(EmailConnector(make_config()))
