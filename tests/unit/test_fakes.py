"""The vendor fakes enforce the Discord and Slack webhook contracts they stand in for."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.fakes import FakeDiscord, FakeSlack

TIMEOUT_S = 5.0
DISCORD_429_HEADERS = ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                       "X-RateLimit-Reset", "X-RateLimit-Reset-After", "X-RateLimit-Bucket",
                       "X-RateLimit-Scope")


def post(url: str, body: Any) -> requests.Response:
    """POST ``body`` as JSON."""
    return requests.post(url, json=body, timeout=TIMEOUT_S)


def embed_with(**parts: Any) -> dict[str, Any]:
    """A message with one embed made of ``parts``."""
    return {"embeds": [parts]}


# --- Discord: identity -------------------------------------------------------------------------


def test_discord_execute__unknown_webhook_id__404_unknown_webhook(discord_fake: FakeDiscord):
    # Given a fake with one webhook
    discord_fake.add_webhook(webhook_id="111", token="tok")
    # When a different webhook id is executed
    response = post(f"{discord_fake.base_url}/api/v10/webhooks/222/tok", {"content": "x"})
    # Then Discord's Unknown Webhook error comes back
    assert response.status_code == 404
    assert response.json() == {"code": 10015, "message": "Unknown Webhook"}


def test_discord_execute__wrong_token__401_invalid_token(discord_fake: FakeDiscord):
    # Given a webhook
    discord_fake.add_webhook(webhook_id="111", token="right")
    # When it is executed with another token
    response = post(f"{discord_fake.base_url}/api/v10/webhooks/111/wrong", {"content": "x"})
    # Then Discord's Invalid Webhook Token error comes back
    assert response.status_code == 401
    assert response.json() == {"code": 50027, "message": "Invalid Webhook Token"}


def test_discord_execute__non_numeric_id__400_invalid_form_body(discord_fake: FakeDiscord):
    # Given a running fake
    # When a webhook id that is not a snowflake is used
    response = post(f"{discord_fake.base_url}/api/v10/webhooks/abc/tok", {"content": "x"})
    # Then the id is reported as a form error
    assert response.status_code == 400
    assert "webhook_id" in response.json()["errors"]


def test_discord_execute__deleted_webhook__404_unknown_webhook(discord_fake: FakeDiscord):
    # Given a webhook that was deleted
    url = discord_fake.add_webhook()
    discord_fake.delete_webhook(url)
    # When it is executed
    response = post(url, {"content": "x"})
    # Then it is unknown
    assert response.status_code == 404
    assert response.json()["code"] == 10015


def test_discord_execute__unversioned_path__accepted(discord_fake: FakeDiscord):
    # Given a webhook, addressed the way Discord's UI copies it (no /v10)
    url = discord_fake.add_webhook(webhook_id="123", token="tok")
    # When the unversioned URL is executed
    response = post(f"{discord_fake.base_url}/api/webhooks/123/tok", {"content": "hi"})
    # Then it is accepted and counted for the same webhook
    assert response.status_code == 204
    assert discord_fake.messages(url) == [{"content": "hi"}]


def test_discord_get__known_webhook__200_webhook_object(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook(webhook_id="123", token="tok")
    # When a health check GETs it
    response = requests.get(url, timeout=TIMEOUT_S)
    # Then the webhook object comes back, token included
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["type"], body["token"]) == ("123", 1, "tok")
    assert body["channel_id"] and body["guild_id"] and body["name"]


# --- Discord: payload -------------------------------------------------------------------------


def test_discord_execute__wait_true__200_message_object(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When a message is sent with ?wait=true
    response = post(url + "?wait=true", {"content": "Deploy finished",
                                         "allowed_mentions": {"parse": []}})
    # Then the created message is returned
    assert response.status_code == 200
    message = response.json()
    assert message["content"] == "Deploy finished"
    assert message["webhook_id"] == url.split("/")[-2]
    assert message["id"] and message["channel_id"] and message["embeds"] == []


def test_discord_execute__no_wait__204_without_body(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When a message is sent without ?wait
    response = post(url, {"content": "x"})
    # Then the answer is 204 with no body, and the message is recorded
    assert (response.status_code, response.content) == (204, b"")
    assert discord_fake.messages() == [{"content": "x"}]


def test_discord_execute__text_plain_body__400_invalid_json(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When the JSON is sent with the wrong content type
    response = requests.post(url, data='{"content": "x"}', timeout=TIMEOUT_S,
                             headers={"Content-Type": "text/plain"})
    # Then it is refused and nothing is posted
    assert response.status_code == 400
    assert response.json()["code"] == 50109
    assert discord_fake.messages() == []


def test_discord_execute__malformed_json__400_invalid_json(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When the body is not JSON
    response = requests.post(url, data="{content", timeout=TIMEOUT_S,
                             headers={"Content-Type": "application/json"})
    # Then Discord's invalid-JSON error comes back
    assert response.status_code == 400
    assert response.json() == {"code": 50109, "message": "The request body contains invalid JSON."}


@pytest.mark.parametrize("body", [{}, {"content": ""}, {"content": "   "}, {"embeds": []},
                                  {"username": "bot"}])
def test_discord_execute__empty_message__400_code_50006(discord_fake: FakeDiscord, body):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When a message without content, embeds, components or poll is sent
    response = post(url, body)
    # Then Discord refuses to send an empty message
    assert response.status_code == 400
    assert response.json() == {"code": 50006, "message": "Cannot send an empty message"}


FIELD = {"name": "n", "value": "v"}
INVALID_DISCORD_BODIES = {
    "content_2001": ({"content": "x" * 2001}, ["content"]),
    "embeds_11": ({"embeds": [{"title": "t"}] * 11}, ["embeds"]),
    "title_257": (embed_with(title="x" * 257), ["embeds", "0", "title"]),
    "description_4097": (embed_with(description="x" * 4097), ["embeds", "0", "description"]),
    "fields_26": (embed_with(fields=[FIELD] * 26), ["embeds", "0", "fields"]),
    "field_name_257": (embed_with(fields=[{"name": "x" * 257, "value": "v"}]),
                       ["embeds", "0", "fields", "0", "name"]),
    "field_value_1025": (embed_with(fields=[{"name": "n", "value": "x" * 1025}]),
                         ["embeds", "0", "fields", "0", "value"]),
    "field_without_name": (embed_with(fields=[{"value": "v"}]),
                           ["embeds", "0", "fields", "0", "name"]),
    "field_empty_value": (embed_with(fields=[{"name": "n", "value": ""}]),
                          ["embeds", "0", "fields", "0", "value"]),
    "footer_2049": (embed_with(footer={"text": "x" * 2049}), ["embeds", "0", "footer", "text"]),
    "author_257": (embed_with(author={"name": "x" * 257}), ["embeds", "0", "author", "name"]),
    "total_6002": ({"embeds": [{"description": "x" * 3001}, {"description": "y" * 3001}]},
                   ["embeds"]),
    "username_81": ({"content": "x", "username": "u" * 81}, ["username"]),
    "username_clyde": ({"content": "x", "username": "Clyde helper"}, ["username"]),
    "username_discord": ({"content": "x", "username": "APG DISCORD bot"}, ["username"]),
    "parse_users_and_users": (
        {"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
        ["allowed_mentions"]),
    "parse_roles_and_roles": (
        {"content": "x", "allowed_mentions": {"parse": ["roles"], "roles": ["1"]}},
        ["allowed_mentions"]),
    "parse_unknown_value": ({"content": "x", "allowed_mentions": {"parse": ["here"]}},
                            ["allowed_mentions", "parse", "0"]),
    "color_out_of_range": (embed_with(title="t", color=0x1000000), ["embeds", "0", "color"]),
    "timestamp_not_iso": (embed_with(title="t", timestamp="yesterday"),
                          ["embeds", "0", "timestamp"]),
}


@pytest.mark.parametrize(("body", "error_path"), INVALID_DISCORD_BODIES.values(),
                         ids=INVALID_DISCORD_BODIES.keys())
def test_discord_execute__invalid_form__400_code_50035_naming_field(
        discord_fake: FakeDiscord, body, error_path):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When a body breaking one documented limit is sent
    response = post(url + "?wait=true", body)
    # Then it is refused as an Invalid Form Body whose error tree names the field
    assert response.status_code == 400, response.text
    payload = response.json()
    assert (payload["code"], payload["message"]) == (50035, "Invalid Form Body")
    node = payload["errors"]
    for part in error_path:
        node = node[part]
    assert node["_errors"][0]["code"]
    assert discord_fake.messages() == []


VALID_DISCORD_BODIES = {
    "content_2000": {"content": "x" * 2000, "allowed_mentions": {"parse": []}},
    "embeds_10": {"embeds": [{"title": "t"}] * 10},
    "embed_at_limits": embed_with(title="x" * 256, description="x" * 4096,
                                  author={"name": "x" * 256}, footer={"text": "x" * 1392}),
    "fields_at_limits": embed_with(fields=[{"name": "x" * 200, "value": "y" * 20}] * 25),
    "field_lengths_at_limits": embed_with(fields=[{"name": "x" * 256, "value": "y" * 1024,
                                                   "inline": True}]),
    "footer_2048": embed_with(footer={"text": "x" * 2048}),
    "total_6000_after_trim": {"embeds": [{"description": "  " + "x" * 3000 + "\n"},
                                         {"description": "\t" + "y" * 3000 + "  "}]},
    "username_80": {"content": "x", "username": "u" * 80},
    "specific_users_only": {"content": "<@1>", "allowed_mentions": {"parse": [], "users": ["1"]}},
    "parse_all_known": {"content": "x", "allowed_mentions": {"parse": ["users", "roles",
                                                                       "everyone"]}},
    "rich_embed": embed_with(title="t", url="https://example.invalid", color=0xFFFFFF,
                             timestamp="2026-01-01T00:00:00Z", image={"url": "https://x.invalid"}),
}


@pytest.mark.parametrize("body", VALID_DISCORD_BODIES.values(), ids=VALID_DISCORD_BODIES.keys())
def test_discord_execute__within_limits__200_and_recorded(discord_fake: FakeDiscord, body):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When a body at (not over) the documented limits is sent
    response = post(url + "?wait=true", body)
    # Then it is accepted and recorded as sent
    assert response.status_code == 200, response.text
    assert discord_fake.messages(url) == [body]


def test_discord_execute__json_array_body__400_invalid_form_body(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When the JSON body is a list instead of an object
    response = post(url, [{"content": "x"}])
    # Then it is a form error at the top level
    assert response.status_code == 400
    assert response.json()["errors"]["_errors"][0]["code"] == "DICT_TYPE_CONVERT"


# --- Discord: rate limits and scripted failures -------------------------------------------------


def test_discord_rate_limit__exceeded__429_with_discord_headers(discord_fake: FakeDiscord):
    # Given a webhook limited to 2 requests per 5 s
    url = discord_fake.add_webhook()
    discord_fake.rate_limit(2, per_s=5.0)
    # When a third request comes within the window
    first, second, third = (post(url, {"content": str(i)}) for i in range(3))
    # Then it gets Discord's 429 with every rate-limit header, and only two were posted
    assert (first.status_code, second.status_code, third.status_code) == (204, 204, 429)
    assert all(name in third.headers for name in DISCORD_429_HEADERS)
    assert third.headers["X-RateLimit-Remaining"] == "0"
    assert third.headers["X-RateLimit-Scope"] == "user"
    assert 1 <= int(third.headers["Retry-After"]) <= 5
    body = third.json()
    assert body["global"] is False and 0 < body["retry_after"] <= 5.0
    assert body["message"] == "You are being rate limited."
    assert len(discord_fake.messages()) == 2


def test_discord_rate_limit__per_webhook__other_webhook_unaffected(discord_fake: FakeDiscord):
    # Given two webhooks limited to 1 request per 5 s each
    first, second = discord_fake.add_webhook(), discord_fake.add_webhook()
    discord_fake.rate_limit(1, per_s=5.0)
    # When each gets one request after the first one used its slot
    post(first, {"content": "a"})
    # Then the second webhook still accepts
    assert post(second, {"content": "b"}).status_code == 204
    assert post(first, {"content": "c"}).status_code == 429


def test_discord_fail_next__429_twice__then_success(discord_fake: FakeDiscord):
    # Given two scripted 429s advertising 2.5 s
    url = discord_fake.add_webhook()
    discord_fake.fail_next(429, times=2, retry_after_s=2.5)
    # When three messages are sent
    responses = [post(url, {"content": str(i)}) for i in range(3)]
    # Then two are rate limited with Retry-After rounded up, the third is delivered
    assert [r.status_code for r in responses] == [429, 429, 204]
    assert responses[0].headers["Retry-After"] == "3"
    assert responses[0].json()["retry_after"] == 2.5
    assert discord_fake.messages() == [{"content": "2"}]


def test_discord_fail_next__custom_body_and_webhook__only_that_webhook_fails(
        discord_fake: FakeDiscord):
    # Given a scripted 503 for one of two webhooks
    target, other = discord_fake.add_webhook(), discord_fake.add_webhook()
    discord_fake.fail_next(503, body={"message": "upstream"}, headers={"X-Test": "1"},
                           webhook_url=target)
    # When both are executed
    other_response, target_response = post(other, {"content": "a"}), post(target, {"content": "b"})
    # Then only the targeted webhook fails, with the scripted body and header
    assert other_response.status_code == 204
    assert target_response.status_code == 503
    assert target_response.json() == {"message": "upstream"}
    assert target_response.headers["X-Test"] == "1"


def test_discord_fail_next__get_only__health_check_fails_post_succeeds(
        discord_fake: FakeDiscord):
    # Given a scripted 404 for GETs only
    url = discord_fake.add_webhook()
    discord_fake.fail_next(404, method="GET")
    # When the webhook is posted to and then fetched
    posted, fetched = post(url, {"content": "x"}), requests.get(url, timeout=TIMEOUT_S)
    # Then only the GET fails, with Discord's own Unknown Webhook body
    assert posted.status_code == 204
    assert fetched.status_code == 404
    assert fetched.json() == {"code": 10015, "message": "Unknown Webhook"}


# --- Slack -------------------------------------------------------------------------------------


def test_slack_post__text__200_ok_text_html(slack_fake: FakeSlack):
    # Given a Slack webhook
    url = slack_fake.add_webhook()
    # When the minimal valid message is posted
    response = post(url, {"text": "Deploy finished"})
    # Then Slack answers ok as text/html and records it
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["Content-Type"].startswith("text/html")
    assert slack_fake.messages(url) == [{"text": "Deploy finished"}]


def test_slack_post__unknown_path__404_no_service(slack_fake: FakeSlack):
    # Given a webhook that was never created
    url = f"{slack_fake.base_url}/services/T000/B000/XXXX"
    # When it is posted to
    response = post(url, {"text": "x"})
    # Then Slack answers no_service
    assert (response.status_code, response.text) == (404, "no_service")
    assert response.headers["Content-Type"].startswith("text/html")


def test_slack_post__revoked_webhook__404_no_service(slack_fake: FakeSlack):
    # Given a revoked webhook
    url = slack_fake.add_webhook()
    slack_fake.revoke_webhook(url)
    # When it is posted to
    response = post(url, {"text": "x"})
    # Then it no longer exists
    assert (response.status_code, response.text) == (404, "no_service")


def test_slack_post__archived_channel__410_channel_is_archived(slack_fake: FakeSlack):
    # Given a webhook whose channel was archived
    url = slack_fake.add_webhook()
    slack_fake.archive_webhook(url)
    # When it is posted to
    response = post(url, {"text": "x"})
    # Then Slack answers 410 channel_is_archived
    assert (response.status_code, response.text) == (410, "channel_is_archived")
    assert slack_fake.messages() == []


@pytest.mark.parametrize(("data", "content_type"), [
    ('{"text": "x"}', "text/plain"),
    ("payload=%7B%22text%22%3A%22x%22%7D", "application/x-www-form-urlencoded"),
    ("{text", "application/json"),
    ('["text"]', "application/json"),
    ('{"text": 5}', "application/json"),
])
def test_slack_post__not_a_json_object__400_invalid_payload(slack_fake: FakeSlack, data,
                                                            content_type):
    # Given a webhook
    url = slack_fake.add_webhook()
    # When the body is not a JSON object sent as application/json
    response = requests.post(url, data=data, headers={"Content-Type": content_type},
                             timeout=TIMEOUT_S)
    # Then Slack answers invalid_payload
    assert (response.status_code, response.text) == (400, "invalid_payload")


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"blocks": []}, {"username": "bot"}])
def test_slack_post__no_text_or_blocks__400_no_text(slack_fake: FakeSlack, body):
    # Given a webhook
    url = slack_fake.add_webhook()
    # When neither text, blocks nor attachments are sent
    response = post(url, body)
    # Then Slack answers no_text
    assert (response.status_code, response.text) == (400, "no_text")


def section(text: str, **extra: Any) -> dict[str, Any]:
    """A section block with mrkdwn text."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def header(text: str, text_type: str = "plain_text") -> dict[str, Any]:
    """A header block."""
    return {"type": "header", "text": {"type": text_type, "text": text}}


def fields(count: int, length: int = 1) -> list[dict[str, str]]:
    """``count`` section fields of ``length`` characters."""
    return [{"type": "mrkdwn", "text": "f" * length}] * count


def context(count: int) -> dict[str, Any]:
    """A context block with ``count`` elements."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * count}


INVALID_SLACK_BLOCKS = {
    "blocks_51": [{"type": "divider"}] * 51,
    "section_text_3001": [section("x" * 3001)],
    "section_fields_11": [{"type": "section", "fields": fields(11)}],
    "section_field_2001": [{"type": "section", "fields": fields(1, 2001)}],
    "section_empty": [{"type": "section"}],
    "header_151": [header("x" * 151)],
    "header_mrkdwn": [header("x", "mrkdwn")],
    "unknown_type": [{"type": "table"}],
    "context_11": [context(11)],
    "not_a_list": {"type": "divider"},
}


@pytest.mark.parametrize("blocks", INVALID_SLACK_BLOCKS.values(), ids=INVALID_SLACK_BLOCKS.keys())
def test_slack_post__blocks_over_limits__400_invalid_blocks(slack_fake: FakeSlack, blocks):
    # Given a webhook
    url = slack_fake.add_webhook()
    # When blocks break one Block Kit rule
    response = post(url, {"text": "fallback", "blocks": blocks})
    # Then Slack answers invalid_blocks and posts nothing
    assert (response.status_code, response.text) == (400, "invalid_blocks")
    assert slack_fake.messages() == []


VALID_SLACK_BLOCKS = {
    "blocks_50": [{"type": "divider"}] * 50,
    "section_text_3000": [section("x" * 3000)],
    "section_fields_at_limits": [{"type": "section", "fields": fields(10, 2000)}],
    "header_150": [header("x" * 150)],
    "context_10": [context(10)],
    "all_allowed_types": [header("h"), section("s"), context(1), {"type": "divider"},
                          {"type": "actions", "elements": [{"type": "button", "text": {
                              "type": "plain_text", "text": "b"}, "url": "https://x.invalid"}]},
                          {"type": "image", "image_url": "https://x.invalid/a.png",
                           "alt_text": "a"}],
}


@pytest.mark.parametrize("blocks", VALID_SLACK_BLOCKS.values(), ids=VALID_SLACK_BLOCKS.keys())
def test_slack_post__blocks_within_limits__200_ok(slack_fake: FakeSlack, blocks):
    # Given a webhook
    url = slack_fake.add_webhook()
    # When blocks at (not over) the limits are posted, without text
    response = post(url, {"blocks": blocks})
    # Then Slack accepts them
    assert (response.status_code, response.text) == (200, "ok")
    assert slack_fake.messages(url) == [{"blocks": blocks}]


def test_slack_post__text_over_40000__accepted_and_truncated(slack_fake: FakeSlack):
    # Given a webhook
    url = slack_fake.add_webhook()
    # When a 40,001-character text is posted
    response = post(url, {"text": "x" * 40_001})
    # Then it is accepted but stored cut at 40,000 characters
    assert (response.status_code, response.text) == (200, "ok")
    assert len(slack_fake.messages()[0]["text"]) == 40_000


def test_slack_rate_limit__exceeded__429_rate_limited_with_retry_after(slack_fake: FakeSlack):
    # Given a webhook limited to one message per 2 s
    url = slack_fake.add_webhook()
    slack_fake.rate_limit(1, per_s=2.0)
    # When two messages are posted at once
    first, second = post(url, {"text": "a"}), post(url, {"text": "b"})
    # Then the second is rate limited with an integer Retry-After
    assert first.status_code == 200
    assert (second.status_code, second.text) == (429, "rate_limited")
    assert second.headers["Retry-After"] in ("1", "2")


def test_slack_fail_next__500__rollup_error_then_ok(slack_fake: FakeSlack):
    # Given one scripted 500
    url = slack_fake.add_webhook()
    slack_fake.fail_next(500)
    # When two messages are posted
    first, second = post(url, {"text": "a"}), post(url, {"text": "b"})
    # Then the first gets Slack's rollup_error, the second goes through
    assert (first.status_code, first.text) == (500, "rollup_error")
    assert (second.status_code, second.text) == (200, "ok")
    assert slack_fake.messages() == [{"text": "b"}]


def test_slack_fail_next__429__retry_after_header(slack_fake: FakeSlack):
    # Given a scripted 429 advertising 30 s
    url = slack_fake.add_webhook()
    slack_fake.fail_next(429, retry_after_s=30)
    # When a message is posted
    response = post(url, {"text": "a"})
    # Then the 429 carries Retry-After: 30
    assert (response.status_code, response.text) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "30"


# --- shared server behaviour -------------------------------------------------------------------


def test_recorded_request__post__carries_method_path_query_headers_body(slack_fake: FakeSlack):
    # Given a webhook
    url = slack_fake.add_webhook()
    before = time.time()
    # When a request with a custom header and query is posted
    requests.post(url + "?x=1", json={"text": "hi"}, headers={"User-Agent": "apg-test/1"},
                  timeout=TIMEOUT_S)
    # Then every part of it is recorded
    (recorded,) = slack_fake.requests
    assert recorded.method == "POST"
    assert url.endswith(recorded.path)
    assert recorded.query == {"x": "1"}
    assert recorded.header("user-agent") == "apg-test/1"
    assert recorded.headers["Content-Type"] == "application/json"
    assert recorded.body == b'{"text": "hi"}'
    assert recorded.json == {"text": "hi"}
    assert before <= recorded.received_at <= time.time()


def test_recorded_request__rejected_request__still_recorded(discord_fake: FakeDiscord):
    # Given a webhook
    url = discord_fake.add_webhook()
    # When an invalid request is sent
    requests.post(url, data=b"not json", timeout=TIMEOUT_S)
    # Then it is recorded although refused
    (recorded,) = discord_fake.requests
    assert recorded.body == b"not json" and recorded.json is None
    assert discord_fake.messages() == []


def test_delay__slower_than_client_timeout__timeout_but_message_kept(discord_fake: FakeDiscord):
    # Given a fake that answers after 1 s
    url = discord_fake.add_webhook()
    discord_fake.delay_s = 1.0
    # When a client waits only 0.2 s
    with pytest.raises(requests.Timeout):
        requests.post(url, json={"content": "slow"}, timeout=(1.0, 0.2))
    # Then the client timed out although the vendor did post the message
    assert discord_fake.messages() == [{"content": "slow"}]


def test_wait_for_messages__arrives_later__returns_list(slack_fake: FakeSlack):
    # Given a message that is already posted
    url = slack_fake.add_webhook()
    post(url, {"text": "a"})
    # When waiting for one message
    found = slack_fake.wait_for_messages(1, timeout_s=1, webhook_url=url)
    # Then it is returned
    assert found == [{"text": "a"}]


def test_wait_for_messages__too_few__assertion_error_with_what_it_has(slack_fake: FakeSlack):
    # Given one accepted message and one refused
    url = slack_fake.add_webhook()
    post(url, {"text": "only one"})
    post(url, {"blocks": [{"type": "table"}]})
    # When waiting for two
    # Then the wait fails, showing what arrived and what was refused
    with pytest.raises(AssertionError, match="only one") as failure:
        slack_fake.wait_for_messages(2, timeout_s=0.1)
    assert "invalid_blocks" in str(failure.value)


def test_messages__unknown_webhook_url__value_error(discord_fake: FakeDiscord):
    # Given a running fake
    # When asking for the messages of a URL that is not a webhook
    # Then the mistake is reported instead of silently returning everything
    with pytest.raises(ValueError):
        discord_fake.messages("http://127.0.0.1/not-a-webhook")


def test_stop__after_context_exit__port_refuses_connections():
    # Given a fake used as a context manager
    with FakeSlack() as fake:
        url = fake.add_webhook()
        assert post(url, {"text": "up"}).status_code == 200
    # When the block has exited
    # Then the port no longer answers
    with pytest.raises(requests.ConnectionError):
        post(url, {"text": "down"})
