"""Slack payload builder and settings: pure tests, no network."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from config_core.errors import ConfigError
from connectors.slack import SlackConnector, build_payload
from tests.unit.samples import make_event

WEBHOOK = "https://hooks.slack.com/services/T000/B000/slack-secret-token"


def make_config(**overrides: Any) -> dict[str, Any]:
    return {"webhook_url": WEBHOOK, **overrides}


def blocks_of(payload: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [block for block in payload["blocks"] if block["type"] == kind]


def field_texts(payload: dict[str, Any]) -> list[str]:
    sections = [block for block in blocks_of(payload, "section") if "fields" in block]
    assert len(sections) == 1
    return [field["text"] for field in sections[0]["fields"]]


def all_mrkdwn(payload: dict[str, Any]) -> list[str]:
    """Every text Slack would parse for mentions: ``text`` and every mrkdwn object."""
    found = [payload["text"]]

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            if item.get("type") == "mrkdwn":
                found.append(item["text"])
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(payload["blocks"])
    return found


def test_build_payload__config_changed__guide_fields_in_order() -> None:
    # Given the guide's example change
    event = make_event()

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then the header, the fields and the fallback text read like the guide's message
    header = blocks_of(payload, "header")[0]["text"]
    assert header == {"type": "plain_text", "text": "🔧 Configuration Changed", "emoji": True}
    assert field_texts(payload) == [
        "*Key:*\n`app.database.host`", "*Old Value:*\n`localhost`",
        "*New Value:*\n`prod-db.internal`", "*Changed By:*\nadmin@company.com",
        "*Environment:*\nproduction", "*Time:*\n2025-01-01 14:30:00 UTC",
    ]
    assert payload["text"] == "🔧 Configuration Changed: app.database.host"
    assert payload["username"] == "APG Config Bot"
    assert "channel" not in payload and "icon_emoji" not in payload
    assert payload["blocks"][-1]["type"] == "context"


def test_build_payload__event_has_reason__reason_section_after_fields() -> None:
    # Given a change with a reason
    event = make_event(reason="database migration")

    # When the payload is built
    payload = build_payload(event, make_config())

    # Then a Reason section follows the fields
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert payload["blocks"][2]["text"]["text"] == "*Reason:*\ndatabase migration"


def test_build_payload__legacy_overrides_configured__sent() -> None:
    # Given the guide's identity overrides
    config = make_config(channel="#config-changes", username="Config Herald",
                         icon_emoji=":gear:")

    # When the payload is built
    payload = build_payload(make_event(), config)

    # Then they are in the body (legacy webhooks honour them, app webhooks ignore them)
    assert (payload["channel"], payload["username"], payload["icon_emoji"]) == (
        "#config-changes", "Config Herald", ":gear:")


def test_build_payload__value_tries_to_ping__escaped_everywhere() -> None:
    # Given user-controlled text that tries Slack's special mentions
    hostile = "@everyone <@U123> <!channel> <!here> <!subteam^S1> a&b"
    event = make_event(key="app.x", new_value=hostile, changed_by="<!everyone>", reason=hostile)

    # When the payload is built
    payload = build_payload(event, make_config(mention_groups=["S999"]))

    # Then no "<" from user text survives, and "&" is escaped
    for text in all_mrkdwn(payload):
        assert "<!" not in text and "<@" not in text
    fields = field_texts(payload)
    assert "&lt;!channel&gt;" in fields[2] and "a&amp;b" in fields[2]
    assert fields[3] == "*Changed By:*\n&lt;!everyone&gt;"


def test_build_payload__huge_values__every_limit_kept_by_truncation() -> None:
    # Given a 100 KB value, a dict with 25 long keys, and "&"-heavy text that grows when escaped
    wide = {f"key_{i:02d}_" + "k" * 200: "v" * 300 for i in range(25)}
    event = make_event(key="a." + "<" * 5000, old_value=wide, new_value="&" * 100_000,
                       changed_by="u" * 5000, reason="r&" * 5000, type="custom." + "t" * 400)

    # When the payload is built
    payload = build_payload(event, make_config(mention_groups=["S1"] * 5))

    # Then every limit holds and no escape sequence is cut in half
    assert len(payload["text"]) <= 4000
    assert len(payload["blocks"]) <= 50
    assert len(blocks_of(payload, "header")[0]["text"]["text"]) <= 150
    fields = field_texts(payload)
    assert len(fields) <= 10
    assert all(len(text) <= 2000 for text in fields)
    for block in blocks_of(payload, "section"):
        if "text" in block:
            assert len(block["text"]["text"]) <= 3000
    for text in all_mrkdwn(payload):
        assert not re.search(r"&(?!amp;|lt;|gt;)", text)
    assert fields[2].endswith("…`")


def test_build_payload__json_and_missing_values__compact_json_and_none() -> None:
    # Given a dict old value and no new value
    event = make_event(old_value={"pool": 5}, new_value=None)

    # When the payload is built
    fields = field_texts(build_payload(event, make_config()))

    # Then JSON is compact and None reads "(none)"
    assert fields[1] == '*Old Value:*\n`{"pool":5}`'
    assert fields[2] == "*New Value:*\n`(none)`"


@pytest.mark.parametrize(("urgency", "patterns"), [
    ("high", []),
    ("low", ["*.database.*"]),
])
def test_build_payload__urgent_or_critical__groups_mentioned(urgency: str,
                                                             patterns: list[str]) -> None:
    # Given groups by id, by mention syntax and by handle
    config = make_config(mention_groups=["<!subteam^S0123ABC|devops>", "S999", "@devops-team",
                                         "<!channel>"],
                         critical_patterns=patterns)

    # When a high-urgency or critical change is built
    payload = build_payload(make_event(urgency=urgency), config)

    # Then ids become group mentions in a leading section and in text; handles stay inert text
    expected = "<!subteam^S0123ABC> <!subteam^S999> @devops-team &lt;!channel&gt;"
    assert payload["blocks"][0] == {"type": "section",
                                    "text": {"type": "mrkdwn", "text": expected}}
    assert payload["text"].startswith(expected + " 🔧 Configuration Changed")


def test_build_payload__routine_change__no_group_mentioned() -> None:
    # Given groups configured but a medium change to a key no critical pattern matches
    config = make_config(mention_groups=["S999"], critical_patterns=["*.security.*"])

    # When the payload is built
    payload = build_payload(make_event(urgency="medium"), config)

    # Then nobody is mentioned
    assert "subteam" not in json.dumps(payload)
    assert payload["blocks"][0]["type"] == "header"


def test_validate_config__guide_example__accepted() -> None:
    # Given the guide's configuration
    config = {"webhook_url": WEBHOOK, "channel": "#config-changes", "username": "APG Config Bot",
              "icon_emoji": ":gear:", "mention_groups": ["@devops-team", "@platform-team"]}

    # When it is validated
    result = SlackConnector.validate_config(config)

    # Then it is accepted
    assert result == config


@pytest.mark.parametrize(("field", "value"), [
    ("icon_emoji", "gear"),
    ("icon_emoji", ":two words:"),
    ("channel", "#config changes"),
    ("webhook_url", "http://hooks.slack.com/services/T/B/x"),
    ("mention_groups", ["S1", ""]),
])
def test_validate_config__bad_field__error_names_field(field: str, value: Any) -> None:
    # Given a config with one bad field
    config = make_config(**{field: value})

    # When validated / Then the error names that field
    with pytest.raises(ConfigError, match=field):
        SlackConnector.validate_config(config)


def test_repr__connector__webhook_url_hidden() -> None:
    # Given a configured connector
    connector = SlackConnector(make_config())

    # When it is shown
    text = repr(connector)

    # Then the webhook's token does not appear
    assert "slack-secret-token" not in text and "T000/B000" not in text


@pytest.mark.parametrize(("url", "healthy"), [(WEBHOOK, True), ("not a url", False)])
def test_health_check__webhook_url__true_only_when_well_formed(url: str, healthy: bool) -> None:
    # Given a connector (Slack webhooks cannot be probed without posting)
    connector = SlackConnector({"webhook_url": url})

    # When its health is checked / Then only the config's shape decides
    assert connector.health_check() is healthy
