"""Okta: pure mapping, settings validation, and directory() against the loopback FakeOkta."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from config_core import ConfigService
from config_core.access import RANK
from config_core.errors import ConfigError
from connectors import AuthError, RateLimited, Rejected, Unavailable
from connectors.okta import (
    ACTIVE_STATUSES,
    Membership,
    OktaConnector,
    add_member,
    directory_user,
    directory_users,
    error_text,
    group_searches,
    rate_limit_wait,
    user_email,
)
from connectors.okta import connector as okta_module
from tests.fakes.okta import USER_STATUSES, FakeOkta, make_user, parse_search

MAPPINGS = {"Platform Team": "admin", "Development Team": "write", "QA Team": "read"}
"""The guide's group_mappings."""


@pytest.fixture
def okta_fake() -> Iterator[FakeOkta]:
    """A started FakeOkta (700 seeded users), stopped after the test."""
    with FakeOkta() as fake:
        yield fake


def guide_config(fake: FakeOkta, **overrides: Any) -> dict[str, Any]:
    """The guide's Okta config, pointed at ``fake``."""
    return {"domain": "yourcompany.okta.com", "api_token": fake.token, "sync_groups": True,
            "group_mappings": dict(MAPPINGS), "sync_interval": 3600,
            "user_attributes": ["email", "firstName", "lastName", "department"],
            "base_url": fake.base_url, **overrides}


def connector(fake: FakeOkta, **overrides: Any) -> OktaConnector:
    config = guide_config(fake, **overrides)
    OktaConnector.validate_config(config)
    built = OktaConnector.from_stored("okta", config)
    assert isinstance(built, OktaConnector)
    return built


def expected_roles(fake: FakeOkta, mappings: dict[str, str]) -> dict[str, str | None]:
    """Email → role, computed straight from the fake's data (ACTIVE members only)."""
    found: dict[str, str | None] = {}
    for group, role in mappings.items():
        for user in fake.members(group):
            email = user["profile"]["email"]
            given = role if user["status"] == "ACTIVE" else None
            current = found.get(email)
            if email not in found or RANK.get(given or "", 0) > RANK.get(current or "", 0):
                found[email] = given
    return found


# pure mapping ---------------------------------------------------------------------------------


def test_directory_user__active_in_two_mapped_groups__highest_role_and_both_groups() -> None:
    # Given an ACTIVE user listed in a read group and a write group
    user = make_user("00u1", "ann@x.com", "ACTIVE", department="Eng")
    # When mapped
    found = directory_user(user, ["QA Team", "Development Team"], MAPPINGS, ["email"])
    # Then the strongest role wins and both groups are named
    assert found is not None
    assert (found.email, found.active, found.role) == ("ann@x.com", True, "write")
    assert found.groups == ["Development Team", "QA Team"]


@pytest.mark.parametrize("status", [s for s in USER_STATUSES if s != "ACTIVE"])
def test_directory_user__status_not_active__inactive_without_role(status: str) -> None:
    # Given a member of the admin group whose status is not ACTIVE
    user = make_user("00u1", "ann@x.com", status)
    # When mapped / Then inactive and without any role
    found = directory_user(user, ["Platform Team"], MAPPINGS, [])
    assert found is not None and found.active is False and found.role is None
    assert ACTIVE_STATUSES == {"ACTIVE"}


def test_directory_user__unmapped_group_only__active_without_role() -> None:
    found = directory_user(make_user("00u1", "a@x.com", "ACTIVE"), ["Sales"], MAPPINGS, [])
    assert found is not None and found.active is True and found.role is None


def test_user_email__profile_variants__email_then_login_then_none() -> None:
    # Given profiles with an email, only a login address, and neither
    assert user_email({"profile": {"email": " A@x.com ", "login": "a"}}) == "A@x.com"
    assert user_email({"profile": {"email": None, "login": "b@x.com"}}) == "b@x.com"
    assert user_email({"profile": {"login": "carl"}}) is None
    # Then a user without an address is left out of the directory, and counted
    members = [Membership({"id": "1", "status": "ACTIVE", "profile": {"login": "carl"}}, ["QA"])]
    assert directory_users(members, MAPPINGS, []) == ([], 1)


def test_directory_user__attributes__only_configured_ones_that_exist() -> None:
    user = make_user("00u1", "a@x.com", "ACTIVE", department="Eng", title="CTO")
    found = directory_user(user, [], MAPPINGS, ["email", "department", "costCenter"])
    assert found is not None
    assert found.attributes == {"email": "a@x.com", "department": "Eng"}


def test_add_member__same_user_listed_twice__merged_by_id() -> None:
    members: dict[str, Membership] = {}
    user = make_user("00u1", "a@x.com", "ACTIVE")
    add_member(members, user, "QA Team")
    add_member(members, user, "Platform Team")
    add_member(members, user, "QA Team")
    assert list(members) == ["00u1"] and members["00u1"].groups == ["QA Team", "Platform Team"]


def test_group_searches__quotes_and_many_names__escaped_exact_terms_in_batches() -> None:
    # Given names with quotes and backslashes, more than one batch of them
    names = ['Ops "Core"', "Back\\slash", *[f"G{i:02}" for i in range(25)]]
    # When turned into search expressions
    expressions = list(group_searches(names, batch=20))
    # Then two queries of exact terms, which Okta's grammar reads back to the same names
    assert len(expressions) == 2
    parsed = [term for expression in expressions for term in parse_search(expression)]
    assert {value for _, _, value in parsed} == set(names)
    assert {(attribute, op) for attribute, op, _ in parsed} == {("profile.name", "eq")}


def test_rate_limit_wait__reset_and_date__until_reset_plus_one_second() -> None:
    date = "Wed, 01 Jan 2025 00:00:00 GMT"  # epoch 1735689600
    assert rate_limit_wait({"X-Rate-Limit-Reset": "1735689630", "Date": date}, 0) == 31.0
    # several limits: the earliest reset counts; no Date: the local clock
    assert rate_limit_wait({"X-Rate-Limit-Reset": "1000, 990"}, 980.0) == 11.0
    assert rate_limit_wait({"X-Rate-Limit-Reset": "900"}, 980.0) == 0.0
    assert rate_limit_wait({}, 980.0) is None


def test_error_text__okta_body__summary_code_and_causes() -> None:
    body = {"errorCode": "E0000001", "errorSummary": "Api validation failed",
            "errorCauses": [{"errorSummary": "limit: bad"}]}
    assert error_text(body) == "Api validation failed (E0000001): limit: bad"
    assert error_text({"message": "x"}) is None and error_text(["x"]) is None


# settings -------------------------------------------------------------------------------------


def test_validate_config__guide_example__accepted_with_defaults() -> None:
    # Given the guide's config (base_url aside)
    config = {"domain": "yourcompany.okta.com", "api_token": "your-okta-token",
              "sync_groups": True, "group_mappings": dict(MAPPINGS), "sync_interval": 3600,
              "user_attributes": ["email", "firstName", "lastName", "department"]}
    # When validated / Then accepted; the API origin is https://{domain}
    assert OktaConnector.validate_config(config)["sync_interval"] == 3600
    assert OktaConnector(config).base_url == "https://yourcompany.okta.com"


@pytest.mark.parametrize(("field", "value"), [
    ("domain", "https://yourcompany.okta.com"), ("domain", "yourcompany.okta.com/admin"),
    ("api_token", "SSWS abc"), ("api_token", ""), ("group_mappings", {"QA Team": "owner"}),
    ("group_mappings", {}), ("sync_interval", 10), ("user_attributes", ["email", ""]),
    ("base_url", "http://okta.example.com"), ("sync_groups", "yes"),
])
def test_validate_config__bad_value__refused_naming_the_field(field: str, value: Any) -> None:
    # Given the guide's config with one bad value
    config = {"domain": "acme.okta.com", "api_token": "tok", "group_mappings": dict(MAPPINGS),
              field: value}
    # When validated / Then refused, naming integrations.okta.<field>
    with pytest.raises(ConfigError, match=rf"integrations\.okta\.{field}\b"):
        OktaConnector.validate_config(config)


def test_validate_config__sync_groups_without_mappings__refused_unless_groups_off() -> None:
    with pytest.raises(ConfigError, match=r"integrations\.okta\.group_mappings is required"):
        OktaConnector.validate_config({"domain": "acme.okta.com", "api_token": "tok"})
    OktaConnector.validate_config({"domain": "acme.okta.com", "api_token": "tok",
                                   "sync_groups": False})


async def test_set_config__bad_okta_role__refused_at_set_time(service: ConfigService) -> None:
    # Given a group mapped to a role that does not exist / When stored / Then refused
    with pytest.raises(ConfigError, match=r"group_mappings.*'owner'"):
        await service.set_config("integrations.okta", {
            "domain": "acme.okta.com", "api_token": "tok", "group_mappings": {"QA": "owner"}})


def test_repr__configured__token_masked(okta_fake: FakeOkta) -> None:
    assert okta_fake.token not in repr(connector(okta_fake))


# directory() against the fake -----------------------------------------------------------------


def test_directory__seeded_fake__every_member_on_every_page_with_mapped_roles(
        okta_fake: FakeOkta) -> None:
    # Given 700 seeded users, hundreds of them in the mapped groups
    expected = expected_roles(okta_fake, MAPPINGS)
    assert len(expected) > 400
    # When the directory is read
    users = connector(okta_fake).directory()
    # Then every member is there once, with the role its groups and status give
    assert {u.email: u.role for u in users} == expected
    assert len(users) == len(expected)
    # And it took several pages, each asked with SSWS and limit=200
    assert len(okta_fake.page_requests()) >= 2
    assert all(r.header("Authorization") == f"SSWS {okta_fake.token}" and
               r.query["limit"] == "200" for r in okta_fake.requests)


def test_directory__smaller_pages__same_directory_from_more_pages(
        okta_fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given pages of 37 (the groups search is paged too)
    monkeypatch.setattr(okta_module, "PAGE_LIMIT", 37)
    # When read / Then the same users, over many more pages
    users = connector(okta_fake).directory()
    assert {u.email: u.role for u in users} == expected_roles(okta_fake, MAPPINGS)
    assert len(okta_fake.page_requests()) > 10


def test_directory__groups_search_over_pages__every_mapped_group_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a small org and one group per page of the groups listing
    monkeypatch.setattr(okta_module, "PAGE_LIMIT", 1)
    with FakeOkta(n_users=30) as fake:
        # When read
        users = connector(fake).directory()
        # Then the groups listing was followed page by page, and all three groups were read
        searches = [r for r in fake.requests if r.path == "/api/v1/groups"]
        assert len(searches) == 3 and all("search" in r.query for r in searches)
        assert {u.email: u.role for u in users} == expected_roles(fake, MAPPINGS)


def test_directory__suspended_and_deprovisioned__inactive_without_role(
        okta_fake: FakeOkta) -> None:
    # Given two admins, one suspended and one deprovisioned
    admins = [u["profile"]["email"] for u in okta_fake.members("Platform Team")
              if u["status"] == "ACTIVE"][:2]
    okta_fake.set_status(admins[0], "SUSPENDED")
    okta_fake.set_status(admins[1], "DEPROVISIONED")
    # When read / Then both are listed as inactive, with no role
    by_email = {u.email: u for u in connector(okta_fake).directory()}
    for email in admins:
        assert by_email[email].active is False and by_email[email].role is None
        assert "Platform Team" in by_email[email].groups


def test_directory__case_variant_group__not_mapped(okta_fake: FakeOkta) -> None:
    # Given a group "qa team" (Okta's eq search also finds it) with a member of no other group
    okta_fake.add_group("qa team")
    okta_fake.add_user("lower@x.com", groups=["qa team"])
    # When read / Then only the exactly named group maps
    assert "lower@x.com" not in {u.email for u in connector(okta_fake).directory()}


def test_directory__mapped_group_missing__others_synced_and_warned(
        okta_fake: FakeOkta, caplog: pytest.LogCaptureFixture) -> None:
    # Given a mapping that names a group Okta does not have
    mappings = {**MAPPINGS, "Ghost Team": "admin"}
    # When read
    with caplog.at_level(logging.WARNING, logger="connectors.okta.connector"):
        users = connector(okta_fake, group_mappings=mappings).directory()
    # Then the others still sync, and the missing one is reported
    assert {u.email: u.role for u in users} == expected_roles(okta_fake, MAPPINGS)
    assert "Ghost Team" in caplog.text


def test_directory__sync_groups_off__every_listed_user_without_role(okta_fake: FakeOkta) -> None:
    # Given sync_groups false / When read
    users = connector(okta_fake, sync_groups=False).directory()
    # Then every user Okta lists (deprovisioned ones are not listed), none with a role
    listed = [u for u in okta_fake.data.users.values() if u["status"] != "DEPROVISIONED"]
    assert len(users) == len(listed) and all(u.role is None and not u.groups for u in users)
    assert len(okta_fake.page_requests()) >= 2


def test_directory__401__auth_error_without_token(okta_fake: FakeOkta) -> None:
    # Given a revoked token
    built = connector(okta_fake, api_token="00revokedTokenValue123")
    # When read / Then AuthError with Okta's text, never the token
    with pytest.raises(AuthError, match="Invalid token provided") as caught:
        built.directory()
    assert "00revokedTokenValue123" not in str(caught.value)
    assert "api_token" in str(caught.value)


def test_directory__429_with_reset__rate_limited_until_reset(okta_fake: FakeOkta) -> None:
    # Given Okta answering 429 with X-Rate-Limit-Reset 7 s away
    okta_fake.fail_next(429, retry_after_s=7)
    # When read / Then RateLimited for at least those 7 s
    with pytest.raises(RateLimited) as caught:
        connector(okta_fake).directory()
    assert caught.value.retry_after_s is not None and 7 <= caught.value.retry_after_s <= 10


def test_directory__rate_window_spent__rate_limited_by_the_window(okta_fake: FakeOkta) -> None:
    # Given a window of 2 requests a minute per endpoint
    okta_fake.rate_limit(2, per_s=60)
    # When the third members page is asked / Then RateLimited for about the window
    with pytest.raises(RateLimited) as caught:
        connector(okta_fake).directory()
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 50
    assert okta_fake.requests[-1].path.endswith("/users")


@pytest.mark.parametrize(("status", "error"), [(500, Unavailable), (429, RateLimited),
                                                (401, AuthError)])
def test_directory__page_two_fails__raises_no_partial_directory(
        okta_fake: FakeOkta, status: int, error: type[Exception]) -> None:
    # Given the first page that follows a next link fails
    okta_fake.fail_next_page(status)
    # When read / Then the whole read fails
    with pytest.raises(error):
        connector(okta_fake).directory()
    assert len(okta_fake.page_requests()) == 1


def test_directory__group_gone__rejected_with_okta_message(okta_fake: FakeOkta) -> None:
    # Given a mapped group that vanishes between the search and its members listing
    gone = okta_fake.group_id("QA Team")
    okta_fake.fail_next(404, webhook_url=f"{okta_fake.base_url}/api/v1/groups/{gone}/users")
    # When read / Then Rejected, quoting Okta
    with pytest.raises(Rejected, match=r"okta answered 404: Not found.*E0000007"):
        connector(okta_fake).directory()


def test_directory__next_link_to_other_host__refused(okta_fake: FakeOkta) -> None:
    # Given a page whose next link points elsewhere
    okta_fake.fail_next(200, body="[]",
                        headers={"Link": '<https://evil.example/api/v1/groups?after=x>; '
                                         'rel="next"'})
    # When read / Then refused before the token is sent there
    with pytest.raises(Rejected, match=r"evil\.example"):
        connector(okta_fake).directory()


def test_directory__page_not_a_json_array__unavailable(okta_fake: FakeOkta) -> None:
    okta_fake.fail_next(200, body="<html>proxy login</html>",
                        headers={"Content-Type": "text/html"})
    with pytest.raises(Unavailable, match="without a JSON array"):
        connector(okta_fake).directory()


def test_health_check__token_valid_or_not__true_then_false(okta_fake: FakeOkta) -> None:
    assert connector(okta_fake).health_check() is True
    assert connector(okta_fake, api_token="wrong").health_check() is False


# the fake enforces Okta's contract --------------------------------------------------------------


def test_fake__bearer_instead_of_ssws__401_with_okta_error(okta_fake: FakeOkta) -> None:
    response = requests.get(f"{okta_fake.base_url}/api/v1/groups", timeout=5,
                            headers={"Authorization": f"Bearer {okta_fake.token}"})
    assert response.status_code == 401
    assert response.json()["errorCode"] == "E0000011"
    assert response.json()["errorSummary"] == "Invalid token provided"


def test_fake__paging_rules__limits_capped_cursors_opaque(okta_fake: FakeOkta) -> None:
    headers = {"Authorization": f"SSWS {okta_fake.token}"}
    members = f"{okta_fake.base_url}/api/v1/groups/{okta_fake.group_id('Development Team')}/users"
    # limit above the maximum is capped; none gives the default of 1000
    first = requests.get(members, params={"limit": 5}, headers=headers, timeout=5)
    assert len(first.json()) == 5 and first.headers["X-Rate-Limit-Reset"].isdigit()
    assert len(requests.get(members, headers=headers, timeout=5).json()) > 200
    # a bad limit or a home-made cursor is refused
    assert requests.get(members, params={"limit": 0}, headers=headers, timeout=5
                        ).status_code == 400
    made_up = first.json()[-1]["id"]
    assert requests.get(members, params={"after": made_up}, headers=headers, timeout=5
                        ).status_code == 400
    # the next link, followed as given, continues after the first page
    second = requests.get(first.links["next"]["url"], headers=headers, timeout=5).json()
    assert second[0]["id"] > made_up and len(second) == 5


def test_fake__q_prefix__not_paged(okta_fake: FakeOkta) -> None:
    response = requests.get(f"{okta_fake.base_url}/api/v1/groups", params={"q": "qa"},
                            headers={"Authorization": f"SSWS {okta_fake.token}"}, timeout=5)
    assert [g["profile"]["name"] for g in response.json()] == ["QA Team"]
    assert "next" not in response.links
