"""Secrets are masked by key name, by nested field name, and by declared secret setting."""

from __future__ import annotations

from config_core.masking import MASK, is_secret_key, mask_for_key, redact, secret_strings


def test_is_secret_key__secret_looking_last_segment__true() -> None:
    for key in ("integrations.discord.webhook_url", "app.db.password", "x.api_key",
                "svc.client_secret", "ci.github.token", "a.API_KEY"):
        assert is_secret_key(key), key
    assert not is_secret_key("app.database.host")


def test_mask_for_key__secret_key__whole_value_masked() -> None:
    assert mask_for_key("app.db.password", "hunter2") == MASK
    assert mask_for_key("app.db.password", {"a": "b"}) == {"a": MASK}


def test_mask_for_key__nested_secret_fields__masked_others_kept() -> None:
    # Given a Discord config with a declared-secret 'channels' dict
    value = {"webhook_url": "https://discord.com/api/webhooks/1/tok", "username": "bot",
             "channels": {"database": "https://discord.com/api/webhooks/2/tok2"},
             "nested": {"password": "p", "keep": 1}}
    # When
    masked = mask_for_key("integrations.discord", value, {"channels"})
    # Then
    assert masked == {"webhook_url": MASK, "username": "bot", "channels": {"database": MASK},
                      "nested": {"password": MASK, "keep": 1}}


def test_redact__secret_and_its_url_path__replaced() -> None:
    url = "https://discord.com/api/webhooks/123/s3cr3t-token"
    text = ("HTTPSConnectionPool(host='discord.com'): Max retries exceeded with url: "
            "/api/webhooks/123/s3cr3t-token")
    assert "s3cr3t" not in redact(text, {url})
    assert "s3cr3t" not in redact(f"posting to {url} failed", {url})


def test_secret_strings__collects_every_masked_leaf() -> None:
    value = {"api_key": "k-123456", "channels": {"a": "u-1234567"}, "name": "visible"}
    assert secret_strings(value, {"channels"}) == {"k-123456", "u-1234567"}
