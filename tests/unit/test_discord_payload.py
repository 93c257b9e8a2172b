"""Discord payload builder, channel routing and settings: pure tests, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from config_core.errors import ConfigError
from connectors.chat import ELLIPSIS
from connectors.discord import (
    CONTENT_LIMIT,
    DiscordConnector,
    build_payload,
    raise_for,
    target_url,
    with_wait,
)
from connectors.errors import RateLimited, Rejected
from tests.unit.samples import GUIDE_FIELDS, make_event

WEBHOOK = "https://discord.com/api/webhooks/123456789/main-secret-token"
DB_WEBHOOK = "https://discord.com/api/webhooks/222/db-secret-token"
SEC_WEBHOOK = "https://discord.com/api/webhooks/333/sec-secret-token"


def make_config(**overrides: Any) -> dict[str, Any]:
    return {"webhook_url": WEBHOOK, "username": "APG Config Bot", **overrides}


def embed_of(payload: dict[str, Any]) -> dict[str, Any]:
    assert len(payload["embeds"]) == 1
    return payload["embeds"][0]


def fields_of(payload: dict[str, Any]) -> dict[str, str]:
    return {field["name"]: field["value"] for field in embed_of(payload)["fields"]}


def counted_total(embed: dict[str, Any]) -> int:
    """Discord's embed total: title, description, field names and values, footer, author."""
    parts = [embed.get("title", ""), embed.get("description", ""),
             embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
    for field in embed["fields"]:
        parts += [field["name"], field["value"]]
    return sum(len(part) for part in parts)


def test_build_payload__config_changed__guide_message_fields_in_order() -> None:
    # Given the guide's example change
    event = make_event()

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then the embed reads like the guide's "Example Notification"
    embed = embed_of(payload)
    assert embed["title"] == "🔧 Configuration Changed"
    assert [field["name"] for field in embed["fields"]] == GUIDE_FIELDS
    assert fields_of(payload) == {
        "Key": "app.database.host", "Old Value": "localhost", "New Value": "prod-db.internal",
        "Changed By": "admin@company.com", "Environment": "production",
        "Time": "2025-01-01 14:30:00 UTC",
    }
    assert embed["timestamp"].startswith("2025-01-01T14:30:00.123456")
    assert isinstance(embed["color"], int)
    assert payload["username"] == "APG Config Bot"
    assert payload["allowed_mentions"] == {"parse": []}
    assert "content" not in payload and "avatar_url" not in payload


def test_build_payload__event_has_reason__reason_field_last() -> None:
    # Given a change with a reason
    event = make_event(reason="database migration")

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then Reason follows the guide's fields
    assert [f["name"] for f in embed_of(payload)["fields"]] == [*GUIDE_FIELDS, "Reason"]
    assert fields_of(payload)["Reason"] == "database migration"


@pytest.mark.parametrize(("event_type", "title"), [
    ("config.deleted", "🗑️ Configuration Deleted"),
    ("approval.requested", "🔔 Approval Requested"),
    ("config.error", "🔔 Config Error"),
])
def test_build_payload__other_event_types__readable_title(event_type: str, title: str) -> None:
    # Given an event that is not a plain change
    event = make_event(type=event_type)

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then the title names the event type
    assert embed_of(payload)["title"] == title


def test_build_payload__json_and_missing_values__compact_json_and_none() -> None:
    # Given a deleted key whose old value is a dict and new value is missing
    event = make_event(old_value={"pool": 5, "hosts": ["a", "b"]}, new_value=None,
                       changed_by=None)

    # When the payload is built
    fields = fields_of(build_payload(event, make_config()))

    # Then JSON is compact and None reads "(none)"
    assert fields["Old Value"] == '{"pool":5,"hosts":["a","b"]}'
    assert fields["New Value"] == "(none)"
    assert fields["Changed By"] == "(none)"


def test_build_payload__blank_string_value__shown_quoted_never_empty() -> None:
    # Given a value that is an empty string (Discord refuses empty field values)
    event = make_event(new_value="", old_value="   ")

    # When the payload is built
    fields = fields_of(build_payload(event, make_config()))

    # Then the value is shown quoted
    assert fields["New Value"] == '""'
    assert fields["Old Value"] == '"   "'


def test_build_payload__no_timestamp__time_from_epoch() -> None:
    # Given an event with only the epoch time
    event = make_event(timestamp=None)

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then Time still reads in UTC
    assert fields_of(payload)["Time"] == "2025-01-01 14:30:00 UTC"


def test_build_payload__huge_values__every_limit_kept_by_truncation() -> None:
    # Given a 100 KB value, a dict with 25 long keys, and long texts everywhere else
    wide = {f"key_{i:02d}_" + "k" * 200: "v" * 300 for i in range(25)}
    event = make_event(key="a." + "k" * 250, old_value=wide, new_value="x" * 100_000,
                       changed_by="u" * 5000, reason="r" * 5000, environment="e" * 3000,
                       type="custom." + "t" * 400)

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then every documented limit holds and cut values end in an ellipsis
    embed = embed_of(payload)
    assert len(embed["title"]) <= 256
    assert len(embed["fields"]) == 7
    for field in embed["fields"]:
        assert 0 < len(field["name"]) <= 256
        assert 0 < len(field["value"]) <= 1024
    assert counted_total(embed) <= 6000
    assert fields_of(payload)["New Value"].endswith(ELLIPSIS)
    assert fields_of(payload)["Time"] == "2025-01-01 14:30:00 UTC"


def test_build_payload__several_long_values__longest_shrunk_first() -> None:
    # Given five very long values and a 600-character key, together over the 6000 total
    key = "app." + "k" * 596
    event = make_event(old_value="o" * 3000, new_value="n" * 3000, changed_by="c" * 3000,
                       reason="r" * 3000, environment="e" * 3000, key=key)

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then the shorter values are intact and the longest ones share what is left
    fields = fields_of(payload)
    assert counted_total(embed_of(payload)) <= 6000
    assert fields["Key"] == key
    assert fields["Time"] == "2025-01-01 14:30:00 UTC"
    long_lengths = {len(fields[name]) for name in
                    ("Old Value", "New Value", "Changed By", "Environment", "Reason")}
    assert len(long_lengths) == 1 and long_lengths.pop() < 1024


def test_build_payload__value_tries_to_ping__nobody_can_be_pinged() -> None:
    # Given user-controlled text that tries every kind of ping
    hostile = "@everyone @here <@123> <@!456> <@&789> <!channel>"
    event = make_event(new_value=hostile, changed_by="@here", reason=hostile)

    # When the payload is built with no mentions configured
    payload = build_payload(event, make_config())

    # Then nothing may be pinged and the text no longer forms a mention
    assert payload["allowed_mentions"] == {"parse": []}
    assert "content" not in payload
    text = json.dumps(payload["embeds"], ensure_ascii=False)
    for ping in ("@everyone", "@here", "<@123>", "<@!456>", "<@&789>"):
        assert ping not in text
    assert "123" in fields_of(payload)["New Value"]


def test_build_payload__critical_key__configured_users_mentioned() -> None:
    # Given mentions configured for database keys, by id, role and plain name
    config = make_config(mention_users=["<@123456>", "654321", "<@&789>", "@admin", "@everyone"],
                         critical_patterns=["*.database.*", "*.security.*"])

    # When a database key changes
    payload = build_payload(make_event(), config)

    # Then ids become real mentions allowed by id, names are inert text, everyone is never parsed
    content = payload["content"]
    assert content.startswith("<@123456> <@654321> <@&789>")
    assert "@admin" not in content and "admin" in content
    assert "@everyone" not in content
    assert payload["allowed_mentions"] == {"parse": [], "users": ["123456", "654321"],
                                           "roles": ["789"]}


@pytest.mark.parametrize("patterns", [["*.security.*"], []])
def test_build_payload__key_not_critical__no_mentions(patterns: list[str]) -> None:
    # Given mention_users configured but the key matches no critical pattern
    config = make_config(mention_users=["<@123456>"], critical_patterns=patterns)

    # When a database key changes
    payload = build_payload(make_event(), config)

    # Then nobody is mentioned
    assert "content" not in payload
    assert payload["allowed_mentions"] == {"parse": []}


def test_build_payload__hundreds_of_mention_users__content_and_ids_within_limits() -> None:
    # Given far more mention ids than Discord accepts
    users = [str(10**17 + i) for i in range(500)]
    config = make_config(mention_users=users, critical_patterns=["*"])

    # When the payload is built
    payload = build_payload(make_event(), config)

    # Then content fits and every allowed id is mentioned in it
    allowed = payload["allowed_mentions"]["users"]
    assert len(payload["content"]) <= CONTENT_LIMIT
    assert 0 < len(allowed) <= 100
    assert all(f"<@{user}>" in payload["content"] for user in allowed)


def test_build_payload__avatar_and_username_set__sent() -> None:
    # Given a custom identity
    config = make_config(username="Config Herald", avatar_url="https://example.com/a.png")

    # When the payload is built
    payload = build_payload(make_event(), config)

    # Then it is used
    assert payload["username"] == "Config Herald"
    assert payload["avatar_url"] == "https://example.com/a.png"


@pytest.mark.parametrize(("key", "expected"), [
    ("app.database.host", DB_WEBHOOK),
    ("security.database.password", SEC_WEBHOOK),
    ("app.databases.host", WEBHOOK),
    ("app.cache.ttl", WEBHOOK),
])
def test_target_url__key_segments__first_named_channel_wins(key: str, expected: str) -> None:
    # Given per-segment channels
    config = make_config(channels={"database": DB_WEBHOOK, "security": SEC_WEBHOOK})

    # When the target is chosen for the key
    url = target_url(make_event(key=key), config)

    # Then the first segment naming a channel picks it, else the default webhook
    assert url == expected


def test_with_wait__url_has_query__wait_added_and_query_kept() -> None:
    # Given a webhook URL posting into a thread
    url = WEBHOOK + "?thread_id=42&wait=false"

    # When wait is set
    result = with_wait(url)

    # Then thread_id stays and wait is true
    assert result == WEBHOOK + "?thread_id=42&wait=true"


@pytest.mark.parametrize("username", ["Discord Bot", "my clyde", "CLYDE", "x" * 81, ""])
def test_validate_config__bad_username__error_names_field(username: str) -> None:
    # Given a username Discord would refuse
    config = make_config(username=username)

    # When the config is validated / Then the error names the field
    with pytest.raises(ConfigError, match="username"):
        DiscordConnector.validate_config(config)


def test_validate_config__guide_example__accepted() -> None:
    # Given the guide's configuration
    config = {
        "webhook_url": WEBHOOK, "username": "APG Config Bot",
        "avatar_url": "https://example.com/bot-avatar.png",
        "mention_users": ["@admin", "@devops"],
        "critical_patterns": ["*.database.*", "*.security.*"],
        "channels": {"database": DB_WEBHOOK, "security": SEC_WEBHOOK},
    }

    # When it is validated
    result = DiscordConnector.validate_config(config)

    # Then it is accepted as given
    assert result == config


def test_validate_config__channel_url_not_https__error_names_field() -> None:
    # Given a channel URL over plain http to a public host
    config = make_config(channels={"database": "http://discord.com/api/webhooks/1/x"})

    # When validated / Then refused naming the field
    with pytest.raises(ConfigError, match="channels"):
        DiscordConnector.validate_config(config)


def test_repr__connector_with_secrets__no_secret_shown() -> None:
    # Given a connector with a default and per-channel webhooks
    connector = DiscordConnector(make_config(channels={"database": DB_WEBHOOK}))

    # When it is shown
    text = repr(connector)

    # Then no webhook token appears
    for secret in ("main-secret-token", "db-secret-token", "123456789"):
        assert secret not in text
    assert {WEBHOOK, DB_WEBHOOK} <= connector.secrets()


def make_response(status: int, body: Any, headers: dict[str, str] | None = None
                  ) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


def test_raise_for__429_header_and_body__larger_wait_used() -> None:
    # Given a 429 whose body asks for longer than its header
    response = make_response(429, {"message": "You are being rate limited.",
                                   "retry_after": 5.5, "global": False}, {"Retry-After": "2"})

    # When it is mapped / Then it is rate limited with the larger wait
    with pytest.raises(RateLimited) as caught:
        raise_for(response, {WEBHOOK})
    assert caught.value.retry_after_s == 5.5


def test_raise_for__404_unknown_webhook__rejected_with_discord_message() -> None:
    # Given Discord's answer for a deleted webhook
    response = make_response(404, {"message": "Unknown Webhook", "code": 10015})

    # When it is mapped / Then it is permanent and carries Discord's message and code
    with pytest.raises(Rejected, match="Unknown Webhook \\(code 10015\\)"):
        raise_for(response, {WEBHOOK})
