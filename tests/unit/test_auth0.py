"""Auth0 identity connector: pure mapping, settings, and directory() against the loopback fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from config_core.errors import ConfigError
from connectors import AuthError, RateLimited, Rejected, Unavailable, auth
from connectors.auth0 import (
    Auth0Connector,
    build_directory,
    error_text,
    is_in_connection,
    merge_by_email,
    pick_attributes,
    rate_limit_wait,
    to_directory_user,
    user_query,
)
from connectors.identity import DirectoryUser
from tests.fakes.auth0 import TOKEN_PATH, FakeAuth0

MAPPINGS = {"admin": "admin", "developer": "write", "viewer": "read"}
CONFIG = {"role_mappings": MAPPINGS, "user_attributes": ["email", "name"]}


@pytest.fixture
def auth0_fake() -> Iterator[FakeAuth0]:
    """A started FakeAuth0 with the default seeded tenant (600 users, five roles)."""
    with FakeAuth0() as fake:
        yield fake


def config_for(fake: FakeAuth0, **extra: Any) -> dict[str, Any]:
    """The guide's config against ``fake``."""
    return {"domain": "apg-test.eu.auth0.com", "client_id": fake.client_id,
            "client_secret": fake.client_secret, "role_mappings": dict(MAPPINGS),
            "base_url": fake.base_url, **extra}


def connector_for(fake: FakeAuth0, **extra: Any) -> Auth0Connector:
    config = config_for(fake, **extra)
    Auth0Connector.validate_config(config)
    connector = Auth0Connector.from_stored("auth0", config)
    assert isinstance(connector, Auth0Connector)
    return connector


def profile(user_id: str = "auth0|1", email: str | None = "dev@example.com",
            **fields: Any) -> dict[str, Any]:
    found = {"user_id": user_id, "name": "Dev One",
             "identities": [{"connection": "Username-Password-Authentication"}], **fields}
    if email is not None:
        found["email"] = email
    return found


# pure mapping -------------------------------------------------------------------------------


def test_to_directory_user__member_of_two_mapped_roles__gets_the_highest() -> None:
    # Given an active user in developer (write) and viewer (read)
    # When mapped
    user = to_directory_user(profile(), ["viewer", "developer"], CONFIG)
    # Then the role is write, groups are both role names
    assert user == DirectoryUser("dev@example.com", True, "write", ["developer", "viewer"],
                                 {"email": "dev@example.com", "name": "Dev One"})


def test_to_directory_user__blocked__inactive_and_no_role() -> None:
    # Given a blocked admin / When mapped / Then inactive with no role, groups kept
    user = to_directory_user(profile(blocked=True), ["admin"], CONFIG)
    assert user is not None and (user.active, user.role, user.groups) == (False, None, ["admin"])


def test_to_directory_user__blocked_false__active() -> None:
    user = to_directory_user(profile(blocked=False), ["viewer"], CONFIG)
    assert user is not None and (user.active, user.role) == (True, "read")


def test_to_directory_user__unmapped_role_only__active_without_role() -> None:
    user = to_directory_user(profile(), ["support"], CONFIG)
    assert user is not None and (user.active, user.role) == (True, None)


def test_to_directory_user__no_email__left_out() -> None:
    # Given a passwordless SMS user without email / Then it cannot be a directory entry
    assert to_directory_user(profile(email=None), ["admin"], CONFIG) is None


def test_to_directory_user__mixed_case_email__lower_cased() -> None:
    user = to_directory_user(profile(email="Ada.Lovelace@Example.COM"), ["admin"], CONFIG)
    assert user is not None and user.email == "ada.lovelace@example.com"


def test_pick_attributes__dotted_and_missing_names__only_present_ones() -> None:
    # Given a profile with nested app_metadata
    found = profile(app_metadata={"department": "payments"}, given_name="Dev")
    # When three names are asked, one of them absent
    picked = pick_attributes(found, ["given_name", "app_metadata.department", "family_name"])
    # Then only present ones come back, nested ones under their dotted name
    assert picked == {"given_name": "Dev", "app_metadata.department": "payments"}


def test_to_directory_user__user_attributes_default__email_and_name() -> None:
    user = to_directory_user(profile(nickname="dev"), ["admin"], {"role_mappings": MAPPINGS})
    assert user is not None and user.attributes == {"email": "dev@example.com",
                                                    "name": "Dev One"}


def test_is_in_connection__identities__matches_only_that_connection() -> None:
    user = profile(identities=[{"connection": "google-oauth2"}, {"connection": "acme-saml"}])
    assert is_in_connection(user, "acme-saml") and is_in_connection(user, None)
    assert not is_in_connection(user, "Username-Password-Authentication")


def test_merge_by_email__blocked_and_active_account__active_with_active_role() -> None:
    # Given one email with a blocked admin account and an active viewer account
    blocked = DirectoryUser("a@x.io", False, None, ["admin"], {"name": "old"})
    active = DirectoryUser("a@x.io", True, "read", ["viewer"], {"name": "new"})
    # When merged / Then the active account's role and attributes, all groups
    assert merge_by_email([blocked, active]) == [
        DirectoryUser("a@x.io", True, "read", ["admin", "viewer"], {"name": "new"})]


def test_build_directory__member_outside_connection_or_missing__left_out() -> None:
    # Given three members: one in the connection, one in another, one without a profile
    profiles = {"auth0|1": profile(),
                "google|2": profile("google|2", "g@example.com",
                                    identities=[{"connection": "google-oauth2"}])}
    memberships = {"auth0|1": ["viewer"], "google|2": ["admin"], "auth0|3": ["admin"]}
    # When built for the database connection
    users = build_directory(profiles, memberships,
                            {**CONFIG, "connection": "Username-Password-Authentication"})
    # Then only the first is in the directory
    assert [(u.email, u.role) for u in users] == [("dev@example.com", "read")]


def test_user_query__ids_and_connection__lucene_v3_query() -> None:
    query = user_query(["auth0|1", 'odd"id'], "Username-Password-Authentication")
    assert query == ('user_id:("auth0|1" OR "odd\\"id") AND '
                     'identities.connection:"Username-Password-Authentication"')


def test_rate_limit_wait__reset_epoch_later_than_retry_after__reset_wins() -> None:
    # Given x-ratelimit-reset 7.2 s from now and Retry-After 3
    now = 1_000_000.0
    wait = rate_limit_wait({"x-ratelimit-reset": str(now + 7.2)}, 3.0, now=now)
    # Then the wait is rounded up to whole seconds
    assert wait == 8


def test_rate_limit_wait__no_headers__none() -> None:
    assert rate_limit_wait({}, None) is None


def test_error_text__management_and_token_bodies__vendor_message() -> None:
    assert error_text({"statusCode": 400, "error": "Bad Request", "message": "Invalid query",
                       "errorCode": "invalid_query_string"}) == \
        "Invalid query (invalid_query_string)"
    assert error_text({"error": "access_denied", "error_description": "Unauthorized"}) == \
        "Unauthorized (access_denied)"


# settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [
    ({"role_mappings": {"developer": "owner"}}, "role_mappings"),
    ({"role_mappings": {}}, "role_mappings"),
    ({"role_mappings": ["admin"]}, "role_mappings"),
    ({"domain": "https://apg.auth0.com"}, "domain"),
    ({"domain": "apg.auth0.com/api"}, "domain"),
    ({"base_url": "http://auth0.example.com"}, "base_url"),
    ({"user_attributes": "email"}, "user_attributes"),
    ({"user_attributes": ["email", ""]}, "user_attributes"),
    ({"sync_interval": 10}, "sync_interval"),
    ({"client_secret": None}, "client_secret"),
    ({"audience": "x"}, "audience"),
])
def test_validate_config__bad_setting__error_names_the_field(change: dict[str, Any],
                                                             field: str) -> None:
    # Given the guide's config with one bad setting
    config = {"domain": "yourcompany.auth0.com", "client_id": "cid", "client_secret": "s3cr3t",
              "connection": "Username-Password-Authentication", "role_mappings": MAPPINGS}
    config.update(change)
    # When validated / Then the error names the field
    with pytest.raises(ConfigError, match=field):
        Auth0Connector.validate_config({k: v for k, v in config.items() if v is not None})


def test_validate_config__guide_example__accepted_with_defaults() -> None:
    # Given the guide's example verbatim
    config = {"domain": "yourcompany.auth0.com", "client_id": "your-client-id",
              "client_secret": "your-client-secret",
              "connection": "Username-Password-Authentication",
              "role_mappings": {"admin": "admin", "developer": "write", "viewer": "read"}}
    # When validated / Then defaults are filled in and the base URL is the domain
    stored = Auth0Connector.validate_config(config)
    assert stored["sync_interval"] == 3600 and stored["user_attributes"] == ["email", "name"]
    assert Auth0Connector(stored).base_url == "https://yourcompany.auth0.com"
    assert "your-client-secret" not in repr(Auth0Connector(stored))


# directory() against the fake ---------------------------------------------------------------


def test_directory__seeded_tenant__every_member_of_every_page_mapped_as_configured(
        auth0_fake: FakeAuth0) -> None:
    # Given 600 users in five roles, three of them mapped
    connector = connector_for(auth0_fake)
    # When the directory is read
    users = connector.directory()
    # Then it is exactly what the tenant says, hundreds of users over several pages
    assert {u.email: u.role for u in users} == auth0_fake.expected_roles(MAPPINGS)
    assert len(users) > 400
    developer_pages = auth0_fake.requests_to(f"/api/v2/roles/{auth0_fake.role_id('developer')}")
    assert len(developer_pages) >= 3
    assert {r.query["page"] for r in developer_pages} == {"0", "1", "2"}
    assert all(r.query["per_page"] == "100" for r in developer_pages)


def test_directory__blocked_members__inactive_without_role(auth0_fake: FakeAuth0) -> None:
    # Given the seeded tenant, where some role members are blocked
    blocked = {m["email"].lower() for m in auth0_fake.members("developer")
               if m.get("blocked") is True and m.get("email")}
    assert blocked
    # When the directory is read
    users = {u.email: u for u in connector_for(auth0_fake).directory()}
    # Then blocked users are there, inactive and without a role
    for email in blocked:
        assert (users[email].active, users[email].role) == (False, None)


def test_directory__decoy_role_admin_legacy__only_exact_role_names_used(
        auth0_fake: FakeAuth0) -> None:
    # Given name_filter=admin also matches admin-legacy (unmapped)
    admins = {m["user_id"] for m in auth0_fake.members("admin")}
    legacy = [m for m in auth0_fake.members("admin-legacy")
              if m["user_id"] not in admins and m.get("email")]
    # When the directory is read
    users = {u.email: u for u in connector_for(auth0_fake).directory()}
    # Then no admin-legacy member got admin through the decoy
    assert legacy
    assert all(users.get(m["email"].lower()) is None
               or users[m["email"].lower()].role != "admin" for m in legacy)


def test_directory__connection_set__only_users_of_that_connection(
        auth0_fake: FakeAuth0) -> None:
    # Given connection google-oauth2
    connector = connector_for(auth0_fake, connection="google-oauth2")
    # When the directory is read
    users = connector.directory()
    # Then exactly that connection's members, and the query asked Auth0 for it
    assert {u.email: u.role for u in users} == auth0_fake.expected_roles(MAPPINGS,
                                                                          "google-oauth2")
    assert 0 < len(users) < 200
    queries = [r.query["q"] for r in auth0_fake.requests_to("/api/v2/users")]
    assert queries and all(q.endswith(' AND identities.connection:"google-oauth2"')
                           for q in queries)


def test_directory__role_with_1200_members__checkpoint_paging_reads_them_all() -> None:
    # Given a role with 1,200 members (offset paging stops at 1,000)
    with FakeAuth0(users=1250) as fake:
        fake.add_role("staff", list(fake.tenant.users)[:1200])
        connector = connector_for(fake, role_mappings={"staff": "read"})
        # When the directory is read
        users = connector.directory()
        # Then every member with an email is there, fetched with take/from and no 400
        expected = fake.expected_roles({"staff": "read"})
        assert len(expected) > 1150 and {u.email: u.role for u in users} == expected
        pages = fake.requests_to(f"/api/v2/roles/{fake.role_id('staff')}/users")
        checkpoint = [r for r in pages if "take" in r.query]
        assert len(checkpoint) == 12 and all(r.query["take"] == "100" for r in checkpoint)
        assert ["from" in r.query for r in checkpoint] == [False] + [True] * 11
        assert not any(int(r.query.get("page", 0)) >= 10 for r in pages)


def test_directory__mapped_role_missing_in_auth0__other_roles_synced_and_warning_logged(
        auth0_fake: FakeAuth0, caplog: pytest.LogCaptureFixture) -> None:
    # Given a mapping for a role Auth0 does not have
    mappings = {**MAPPINGS, "release-managers": "admin"}
    # When the directory is read
    with caplog.at_level("WARNING", logger="connectors.auth0.connector"):
        users = connector_for(auth0_fake, role_mappings=mappings).directory()
    # Then the existing roles are synced as usual, and the missing one is named in a warning
    assert {u.email: u.role for u in users} == auth0_fake.expected_roles(MAPPINGS)
    assert "'release-managers'" in caplog.text


def test_sync_data__seeded_tenant__users_as_dicts(auth0_fake: FakeAuth0) -> None:
    data = connector_for(auth0_fake, role_mappings={"admin": "admin"}).sync_data()
    assert data["users"] and set(data["users"][0]) == {"email", "active", "role", "groups",
                                                       "attributes"}


# token ----------------------------------------------------------------------------------------


def test_token__two_directory_calls_within_lifetime__one_token_request(
        auth0_fake: FakeAuth0) -> None:
    # Given a connector / When the directory is read twice (and a new instance reads it too)
    connector_for(auth0_fake).directory()
    connector_for(auth0_fake).directory()
    # Then one token was requested, with the contract's JSON body
    assert auth0_fake.token_requests == 1
    request = auth0_fake.requests_to(TOKEN_PATH)[0]
    assert request.header("Content-Type") == "application/json"
    assert request.json == {"grant_type": "client_credentials",
                            "client_id": auth0_fake.client_id,
                            "client_secret": auth0_fake.client_secret,
                            "audience": f"{auth0_fake.base_url}/api/v2/"}
    calls = auth0_fake.requests_to("/api/v2/")
    assert len({r.header("Authorization") for r in calls}) == 1


def test_token__lifetime_passed__a_new_token_is_requested() -> None:
    # Given tokens that live 2 s (renewed after 1 s)
    with FakeAuth0(users=50, token_lifetime_s=2) as fake:
        connector = connector_for(fake)
        connector.directory()
        connector.directory()
        assert fake.token_requests == 1
        # When the directory is read after the renewal point
        time.sleep(1.2)
        connector.directory()
        # Then exactly one more token was requested
        assert fake.token_requests == 2


def test_token__revoked_token_401__forgotten_and_call_retried_once(
        auth0_fake: FakeAuth0) -> None:
    # Given a cached token that Auth0 no longer accepts
    connector = connector_for(auth0_fake, role_mappings={"admin": "admin"})
    connector.directory()
    auth0_fake.revoke_tokens()
    # When the directory is read again
    users = connector.directory()
    # Then one new token was fetched and the sync succeeded
    assert users and auth0_fake.token_requests == 2


def test_directory__401_twice__auth_error_without_token_or_secret(
        auth0_fake: FakeAuth0) -> None:
    # Given the Management API refusing the token and the fresh one
    connector = connector_for(auth0_fake)
    auth0_fake.fail_request(1, 401)
    auth0_fake.fail_request(2, 401)
    # When the directory is read / Then AuthError, no secret or token in its text
    with pytest.raises(AuthError) as caught:
        connector.directory()
    assert "401" in str(caught.value) and "Invalid token" in str(caught.value)
    assert auth0_fake.client_secret not in str(caught.value) and "eyJ" not in str(caught.value)
    assert auth0_fake.token_requests == 2


def test_directory__rotated_client_secret__auth_error_access_denied(
        auth0_fake: FakeAuth0) -> None:
    # Given a connector holding a secret Auth0 has replaced
    connector = connector_for(auth0_fake)
    old_secret = auth0_fake.client_secret
    auth0_fake.rotate_secret()
    # When the directory is read / Then the token endpoint's refusal is an AuthError
    with pytest.raises(AuthError) as caught:
        connector.directory()
    assert "access_denied" in str(caught.value) and old_secret not in str(caught.value)


# errors ---------------------------------------------------------------------------------------


def test_directory__429_with_ratelimit_reset__rate_limited_with_that_wait(
        auth0_fake: FakeAuth0) -> None:
    # Given a token already cached, then a 429 whose x-ratelimit-reset is 7 s away
    connector = connector_for(auth0_fake, role_mappings={"admin": "admin"})
    connector.directory()
    auth0_fake.fail_next(429, retry_after_s=7)
    # When the directory is read / Then RateLimited with at least that wait
    with pytest.raises(RateLimited) as caught:
        connector.directory()
    assert caught.value.retry_after_s is not None and 7 <= caught.value.retry_after_s <= 9


def test_token__token_endpoint_429__rate_limited(auth0_fake: FakeAuth0) -> None:
    # Given the token endpoint rate limiting (no token cached yet)
    connector = connector_for(auth0_fake)
    auth0_fake.fail_next(429, retry_after_s=7, webhook_url=auth0_fake.token_url)
    # When the directory is read / Then RateLimited, and no Management API call was made
    with pytest.raises(RateLimited, match="too_many_requests"):
        connector.directory()
    assert auth0_fake.requests_to("/api/v2/") == []


def test_token__token_endpoint_429__wait_from_ratelimit_reset(auth0_fake: FakeAuth0) -> None:
    # Given the token endpoint's 429 with x-ratelimit-reset 7 s away
    connector = connector_for(auth0_fake)
    auth0_fake.fail_next(429, retry_after_s=7, webhook_url=auth0_fake.token_url)
    # When the directory is read / Then the wait is Auth0's
    with pytest.raises(RateLimited) as caught:
        connector.directory()
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 7


def test_directory__rate_limit_window_exceeded__rate_limited_never_partial() -> None:
    # Given a tenant allowing 5 Management API calls per minute
    with FakeAuth0() as fake:
        fake.rate_limit(5, per_s=60)
        # When the directory (tens of calls) is read / Then RateLimited, with Auth0's reset
        with pytest.raises(RateLimited) as caught:
            connector_for(fake).directory()
        assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 50


def test_directory__short_429__waited_out_and_same_page_asked_again(
        auth0_fake: FakeAuth0) -> None:
    # Given a cached token, then one 429 on the users search whose reset is a second away
    connector = connector_for(auth0_fake)
    connector.directory()
    auth0_fake.reset()
    auth0_fake.fail_next(429, retry_after_s=1, webhook_url=f"{auth0_fake.base_url}/api/v2/users")
    started = time.monotonic()
    # When the directory is read
    users = connector.directory()
    # Then the sync waited for the reset, asked again, and is complete
    assert time.monotonic() - started >= 1
    assert {u.email: u.role for u in users} == auth0_fake.expected_roles(MAPPINGS)


def test_directory__tenant_allowing_few_requests_a_second__sync_paced_to_completion() -> None:
    # Given a tenant answering 4 Management API calls per half second (Auth0's small plans)
    with FakeAuth0(users=150) as fake:
        fake.rate_limit(4, per_s=0.5)
        # When the directory is read
        users = connector_for(fake).directory()
        # Then it is complete, though Auth0 said 429 on the way
        assert {u.email: u.role for u in users} == fake.expected_roles(MAPPINGS)
        assert len(fake.requests_to("/api/v2/")) > len({(r.path, tuple(sorted(r.query.items())))
                                                        for r in fake.requests_to("/api/v2/")})


def test_directory__429s_beyond_the_wait_budget__rate_limited(
        auth0_fake: FakeAuth0, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a wait budget of 1.5 s and Auth0 answering 429 (1 s) five times
    from connectors.auth0 import api

    monkeypatch.setattr(api, "INLINE_WAIT_BUDGET_S", 1.5)
    connector = connector_for(auth0_fake)
    connector.directory()
    auth0_fake.fail_next(429, times=5, retry_after_s=1)
    # When the directory is read / Then RateLimited once the budget is spent
    with pytest.raises(RateLimited):
        connector.directory()


def test_directory__500_on_page_two__unavailable_no_partial_directory(
        auth0_fake: FakeAuth0) -> None:
    # Given page 2 of developer's members failing
    connector = connector_for(auth0_fake)
    auth0_fake.fail_request(2, 500, f"/api/v2/roles/{auth0_fake.role_id('developer')}/users")
    # When the directory is read / Then Unavailable: nothing is returned
    with pytest.raises(Unavailable):
        connector.directory()


def test_directory__400_from_users_search__rejected_with_auth0_message(
        auth0_fake: FakeAuth0) -> None:
    # Given Auth0 refusing the users search
    connector = connector_for(auth0_fake)
    auth0_fake.fail_next(400, body={"statusCode": 400, "error": "Bad Request",
                                    "message": "Query is too long", "errorCode": "too_long"},
                         webhook_url=f"{auth0_fake.base_url}/api/v2/users")
    # When the directory is read / Then Rejected, carrying Auth0's own message
    with pytest.raises(Rejected, match="Query is too long"):
        connector.directory()


def test_health_check__good_and_rotated_credentials__true_then_false(
        auth0_fake: FakeAuth0) -> None:
    # Given a connector whose credentials work
    connector = connector_for(auth0_fake)
    assert connector.health_check() is True
    # When its secret is rotated and issued tokens revoked / Then the check fails
    auth0_fake.rotate_secret()
    auth0_fake.revoke_tokens()
    assert connector.health_check() is False


# the fake enforces the contract -----------------------------------------------------------------


def _token(fake: FakeAuth0) -> str:
    connector = connector_for(fake)
    return auth.bearer_token(connector.token_request(), vendor="auth0")


@pytest.mark.parametrize(("query", "status"), [
    ({"page": "0", "per_page": "101"}, 400),
    ({"page": "10", "per_page": "100"}, 400),
    ({"page": "9", "per_page": "100"}, 200),
    ({"take": "101"}, 400),
    ({"take": "50", "page": "1"}, 400),
    ({"take": "50", "from": "made-up"}, 400),
])
def test_fake__paging_rules__enforced(auth0_fake: FakeAuth0, query: dict[str, str],
                                      status: int) -> None:
    import requests

    url = f"{auth0_fake.base_url}/api/v2/roles/{auth0_fake.role_id('developer')}/users"
    response = requests.get(url, params=query, timeout=5,
                            headers={"Authorization": f"Bearer {_token(auth0_fake)}"})
    assert response.status_code == status


@pytest.mark.parametrize(("change", "status", "error"), [
    ({"grant_type": "password"}, 403, "unauthorized_client"),
    ({"client_secret": "wrong"}, 401, "access_denied"),
    ({"audience": "https://elsewhere/api/v2/"}, 403, "access_denied"),
])
def test_fake__token_rules__enforced(auth0_fake: FakeAuth0, change: dict[str, str], status: int,
                                     error: str) -> None:
    import requests

    body = {"grant_type": "client_credentials", "client_id": auth0_fake.client_id,
            "client_secret": auth0_fake.client_secret, "audience": auth0_fake.audience, **change}
    response = requests.post(auth0_fake.token_url, json=body, timeout=5)
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_fake__no_bearer_token__401_missing_authentication(auth0_fake: FakeAuth0) -> None:
    import requests

    response = requests.get(f"{auth0_fake.base_url}/api/v2/roles", timeout=5)
    assert response.status_code == 401 and response.json()["message"] == "Missing authentication"
