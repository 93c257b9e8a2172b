"""The HTTP API as a client sees it: a real `apgcfg serve` process on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import redis_url
from tests.integration.apiserver import ApiServer

pytestmark = pytest.mark.integration

API_DB = 9


@pytest.fixture(scope="module")
def api(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(redis_url(API_DB), "apitest", tmp_path_factory.mktemp("api"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def keys(api: ApiServer) -> dict[str, str]:
    return {role: api.new_key(role) for role in ("read", "write", "admin")}


def call(api: ApiServer, method: str, path: str, key: str | None = None,
         headers: dict[str, str] | None = None, **kwargs: object) -> requests.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, f"{api.url}{path}", headers={**auth, **(headers or {})},
                            timeout=10, **kwargs)


def test_api__no_key_or_bad_key__401(api: ApiServer, keys: dict[str, str]) -> None:
    for key in (None, "apg_nope_nope", keys["read"] + "x", "not-a-key"):
        response = call(api, "GET", "/v1/configs", key)
        assert response.status_code == 401, key
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_api__write_then_read__values_versions_history(api: ApiServer,
                                                        keys: dict[str, str]) -> None:
    # Given a writer / When it puts a key twice
    first = call(api, "PUT", "/v1/configs/app.api.host", keys["write"], json={"value": "a"})
    second = call(api, "PUT", "/v1/configs/app.api.host", keys["write"],
                  json={"value": {"h": "b"}, "reason": "move"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["version"] == first.json()["version"] + 1
    # Then a reader sees the value, the list and the history (attributed to the key)
    entry = call(api, "GET", "/v1/configs/app.api.host", keys["read"]).json()
    assert entry == {"key": "app.api.host", "value": {"h": "b"},
                     "version": second.json()["version"]}
    listed = call(api, "GET", "/v1/configs", keys["read"], params={"prefix": "app.api."}).json()
    assert listed == {"items": {"app.api.host": {"h": "b"}}}
    history = call(api, "GET", "/v1/configs/app.api.host/history", keys["read"]).json()
    assert [(h["changed_by"], h["reason"]) for h in history[:2]] == [
        ("apikey:test-write", "move"), ("apikey:test-write", None)]
    deliveries = call(api, "GET", f"/v1/events/{second.json()['event_id']}/deliveries",
                      keys["read"])
    assert deliveries.status_code == 200 and deliveries.json() == []


def test_api__weak_role__403(api: ApiServer, keys: dict[str, str]) -> None:
    assert call(api, "PUT", "/v1/configs/app.x", keys["read"],
                json={"value": 1}).status_code == 403
    refused = call(api, "PUT", "/v1/configs/integrations.batching", keys["write"],
                   json={"value": {"max_retries": 1}})
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert call(api, "PUT", "/v1/configs/integrations.batching", keys["admin"],
                json={"value": {"max_retries": 1}}).status_code == 200


def test_api__bad_body__422_naming_the_field(api: ApiServer, keys: dict[str, str]) -> None:
    missing = call(api, "PUT", "/v1/configs/app.x", keys["write"], json={"reason": "x"})
    assert missing.status_code == 422 and "body.value" in missing.json()["detail"]
    bad_config = call(api, "PUT", "/v1/configs/integrations.discord", keys["admin"],
                      json={"value": {"webhook_url": "ftp://x"}})
    assert bad_config.status_code == 422
    assert "integrations.discord.webhook_url" in bad_config.json()["detail"]
    bad_key = call(api, "GET", "/v1/configs/bad..key", keys["read"])
    assert bad_key.status_code == 422 and "path.key" in bad_key.json()["detail"]


def test_api__delete__404_when_missing(api: ApiServer, keys: dict[str, str]) -> None:
    call(api, "PUT", "/v1/configs/app.gone", keys["write"], json={"value": 1})
    assert call(api, "DELETE", "/v1/configs/app.gone", keys["write"]).status_code == 200
    assert call(api, "DELETE", "/v1/configs/app.gone", keys["write"]).status_code == 404
    assert call(api, "GET", "/v1/configs/app.gone", keys["read"]).status_code == 404


def test_apikeys__listed_hashed_and_revocable(api: ApiServer, tmp_path: Path) -> None:
    key = api.new_key("read")
    listed = api.cli("apikeys", "list")
    assert listed.returncode == 0 and key.split("_", 2)[2] not in listed.stdout
    key_id = key.split("_", 2)[1]
    assert call(api, "GET", "/v1/configs", key).status_code == 200
    assert api.cli("apikeys", "revoke", key_id).returncode == 0
    assert call(api, "GET", "/v1/configs", key).status_code == 401


def test_apikeys_rotate__through_the_server__old_key_200_during_overlap_401_after(
        api: ApiServer) -> None:
    # Given a key the server accepts
    old_key = api.new_key("read")
    old_id = old_key.split("_", 2)[1]
    # When it is rotated with a two-second overlap
    rotated = api.cli("apikeys", "rotate", old_id, "--overlap-s", "2")
    assert rotated.returncode == 0, rotated.stderr
    ends = time.monotonic() + 2
    new_key = rotated.stdout.strip().splitlines()[-1]
    # Then during the overlap both keys are accepted
    assert call(api, "GET", "/v1/configs", old_key).status_code == 200
    assert call(api, "GET", "/v1/configs", new_key).status_code == 200
    # And after it the old key is refused, the new one still accepted
    time.sleep(max(0.0, ends - time.monotonic()) + 0.2)
    assert call(api, "GET", "/v1/configs", old_key).status_code == 401
    assert call(api, "GET", "/v1/configs", new_key).status_code == 200


def test_api__connector_secret__masked_for_readers_revealed_to_admin_only(
        api: ApiServer, keys: dict[str, str]) -> None:
    # Given a Slack config holding its webhook token
    hook = "https://hooks.slack.com/services/T000/B000/slack-token-value"
    assert call(api, "PUT", "/v1/configs/integrations.slack", keys["admin"],
                json={"value": {"webhook_url": hook}}).status_code == 200
    # When read, listed or read by field / Then the token is masked for every key
    for role in ("read", "write", "admin"):
        entry = call(api, "GET", "/v1/configs/integrations.slack", keys[role]).json()
        assert entry["value"] == {"webhook_url": "***"}, role
        listed = call(api, "GET", "/v1/configs", keys[role],
                      params={"prefix": "integrations.slack"}).json()
        assert listed == {"items": {"integrations.slack": {"webhook_url": "***"}}}, role
    # And ?reveal=true shows it to an admin key only
    for role in ("read", "write"):
        refused = call(api, "GET", "/v1/configs/integrations.slack", keys[role],
                       params={"reveal": "true"})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"], role
    revealed = call(api, "GET", "/v1/configs/integrations.slack", keys["admin"],
                    params={"reveal": "true"})
    assert revealed.status_code == 200 and revealed.json()["value"] == {"webhook_url": hook}


def test_api__body_over_1_mib__413_before_parsing_nothing_written(
        api: ApiServer, keys: dict[str, str]) -> None:
    # Given a body just over 1 MiB, sent with its length and streamed without one
    body = b'{"value": "' + b"x" * (1024 * 1024) + b'"}'
    declared = call(api, "PUT", "/v1/configs/app.big", keys["write"], data=body,
                    headers={"Content-Type": "application/json"})
    streamed = call(api, "PUT", "/v1/configs/app.big", keys["write"],
                    data=iter([body[:600_000], body[600_000:]]),
                    headers={"Content-Type": "application/json"})
    # Then both are refused with 413 and a JSON detail; nothing was written
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "1048576 bytes" in response.json()["detail"]
    assert call(api, "GET", "/v1/configs/app.big", keys["read"]).status_code == 404


def test_api__hostile_json__422_naming_the_problem(api: ApiServer, keys: dict[str, str]) -> None:
    # Given bodies nested 200 levels deep, or with a lone surrogate in the value or the reason
    deep = b'{"value": ' + b"[" * 200 + b"1" + b"]" * 200 + b"}"
    cases = [(deep, "nested deeper than 64"),
             (b'{"value": {"a": "\\ud800"}}', "lone surrogate"),
             (b'{"value": 1, "reason": "\\ud800"}', "body.reason")]
    # When put / Then each is a 422 whose detail names the problem
    for body, message in cases:
        response = call(api, "PUT", "/v1/configs/app.hostile", keys["write"], data=body,
                        headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (message, response.text)
        assert message in response.json()["detail"]
    assert call(api, "GET", "/v1/configs/app.hostile", keys["read"]).status_code == 404


def test_api__connector_field_by_its_alias__masked_then_revealed_to_admin(
        api: ApiServer, keys: dict[str, str]) -> None:
    # Given zendesk configured as one dict, its token rotated by the guide's name (api_key)
    config = {"subdomain": "yourcompany", "email": "admin@yourcompany.com",
              "api_token": "zd-api-old-1f2e"}
    assert call(api, "PUT", "/v1/configs/integrations.zendesk", keys["admin"],
                json={"value": config}).status_code == 200
    assert call(api, "PUT", "/v1/configs/integrations.zendesk.api_key", keys["admin"],
                json={"value": "zd-api-new-3c4d"}).status_code == 200
    # When the field is read by either name
    masked = call(api, "GET", "/v1/configs/integrations.zendesk.api_key", keys["read"])
    shown = call(api, "GET", "/v1/configs/integrations.zendesk.api_token", keys["admin"],
                 params={"reveal": "true"})
    # Then a reader sees it masked, an administrator the new token
    assert masked.status_code == 200 and masked.json()["value"] == "***"
    assert shown.status_code == 200 and shown.json()["value"] == "zd-api-new-3c4d"


def test_api__connectors__listed_paused_resumed_by_admin_only(
        api: ApiServer, keys: dict[str, str]) -> None:
    # Given a configured Discord connector
    hook = "https://discord.com/api/webhooks/42/connector-token"
    assert call(api, "PUT", "/v1/configs/integrations.discord", keys["admin"],
                json={"value": {"webhook_url": hook}}).status_code == 200
    # When a writer tries to pause it / Then 403
    refused = call(api, "POST", "/v1/connectors/discord/pause", keys["write"])
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    # When an admin pauses it, a reader lists it, an admin resumes it
    paused = call(api, "POST", "/v1/connectors/discord/pause", keys["admin"],
                  json={"reason": "vendor maintenance"})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    listed = {c["name"]: c for c in call(api, "GET", "/v1/connectors", keys["read"]).json()}
    assert listed["discord"]["paused_reason"] == "vendor maintenance"
    resumed = call(api, "POST", "/v1/connectors/discord/resume", keys["admin"])
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    # Then an unknown connector is 404, and no answer shows the webhook token
    assert call(api, "POST", "/v1/connectors/jira/resume", keys["admin"]).status_code == 404
    assert "connector-token" not in paused.text + resumed.text
