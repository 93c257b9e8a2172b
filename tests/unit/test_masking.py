"""Secrets are masked by key name, by nested field name, and by declared secret setting."""

from __future__ import annotations

import pytest

from config_core.masking import (
    MASK,
    is_secret_key,
    is_secret_name,
    mask_for_key,
    redact,
    secret_strings,
)


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


def test_mask_for_key__url_with_password__only_the_password_masked() -> None:
    # Given strings that carry credentials in a URL, alone, nested or inside text
    value = {"url": "postgres://admin:hunter2@db:5432/x",
             "mirrors": ["https://user:token-123@host/", "https://host/no-creds"],
             "note": "fallback is redis://:redis-pw@cache:6379/0 for now"}
    # When masked under a key that does not look secret
    masked = mask_for_key("app.database", value)
    # Then the passwords are hidden and the rest of each URL kept
    assert masked == {"url": "postgres://admin:***@db:5432/x",
                      "mirrors": ["https://user:***@host/", "https://host/no-creds"],
                      "note": "fallback is redis://:***@cache:6379/0 for now"}
    assert mask_for_key("app.database.url", "mysql://root:pw-99@h/db") == "mysql://root:***@h/db"


def test_is_secret_key__secret_segment_anywhere_in_the_path__true() -> None:
    for key in ("app.password.primary", "db.credentials.user", "svc.api_key.v2",
                "app.connection_string.replica"):
        assert is_secret_key(key), key
    for key in ("app.session.timeout", "app.private.repos", "app.author.name"):
        assert not is_secret_key(key), key


@pytest.mark.parametrize("name", [
    "pwd", "db_pwd", "dsn", "sentry_dsn", "passphrase", "private", "cookie", "session_cookie",
    "session", "session_id", "authorization", "bearer", "bearer_token", "signature",
    "credentials", "secret_key", "connection_string", "conn_str", "connectionString", "SESSION",
])
def test_is_secret_name__credential_names__true(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "key", "author", "authors", "host", "keyboard", "session_timeout", "private_repo",
    "signature_method", "description", "passenger", "index", "monkey", "timeout_s",
])
def test_is_secret_name__harmless_names__false(name: str) -> None:
    assert not is_secret_name(name)


def test_secret_strings__url_password__collected_so_redact_scrubs_it() -> None:
    # Given a value with a URL password and a secret field deeper in its key path
    value = {"url": "postgres://admin:hunter22@db/x", "password": {"primary": "pw-primary-1"}}
    # When collected / Then both are, and redact removes them from free text
    found = secret_strings(value)
    assert {"hunter22", "pw-primary-1"} <= found
    text = redact("connect postgres://admin:hunter22@db/x failed; tried pw-primary-1", found)
    assert "hunter22" not in text and "pw-primary-1" not in text


def test_redact__url_credentials_in_text__masked_without_knowing_them() -> None:
    text = "HTTPError: https://bot:s3cr3t-xyz@api.example.com/v1 refused"
    assert redact(text, ()) == "HTTPError: https://bot:***@api.example.com/v1 refused"
