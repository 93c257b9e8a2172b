"""Azure AD: settings, the pure mapping, and directory() against the loopback Graph fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from config_core import ConfigService
from config_core.errors import ConfigError
from connectors import auth
from connectors.azure_ad import (
    AzureADConnector,
    Graph,
    directory_user,
    group_filters,
    groups_query,
    is_user,
    members_params,
    needs_advanced_query,
    odata_quote,
    scope,
    token_url,
    user_email,
)
from connectors.errors import AuthError, RateLimited, Rejected, Unavailable
from connectors.identity import DirectoryUser, merge_by_email
from tests.conftest import UNIT_DB, redis_url
from tests.fakes.azure_ad import (
    DEVICE,
    GROUP,
    MAPPINGS,
    PEOPLE,
    SERVICE_PRINCIPAL,
    USER,
    FakeAzureAD,
    Tenant,
)

GUIDE = {
    "tenant_id": "2b0f6e4c-8a1d-4c1e-9d3a-0f5b8e7c6a21",
    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "client_secret": "abc8Q~your-client-secret",
    "graph_api_version": "v1.0",
    "sync_groups": True,
    "group_filter": "startswith(displayName,'APG_')",
    "user_attributes": ["id", "displayName", "mail", "jobTitle", "department"],
}
"""The guide's azure_ad_config (with GUIDs where it has placeholders)."""


@pytest.fixture
def fake() -> Iterator[FakeAzureAD]:
    """A started Graph fake of 600 seeded users that serves at most 100 per page."""
    with FakeAzureAD(max_page_size=100) as server:
        yield server


def connector(config: dict[str, Any]) -> AzureADConnector:
    AzureADConnector.validate_config(config)
    built = AzureADConnector.from_stored("azure_ad", config)
    assert isinstance(built, AzureADConnector)
    return built


def graph_url(fake: FakeAzureAD) -> str:
    """A Graph URL of the fake, to aim ``fail_next`` at Graph (not the token endpoint)."""
    return f"{fake.base_url}/v1.0/groups"


def expected_roles(tenant: Tenant) -> dict[str, str | None]:
    """What the directory should say, worked out from the fake's data (an independent oracle)."""
    roles: dict[str, list[str]] = {}
    for group in tenant.groups():
        if not group["displayName"].startswith("APG_"):
            continue
        for member in tenant.transitive(group["id"]):
            email = user_email(member) if member["@odata.type"] == USER else None
            if email:
                roles.setdefault(email, []).append(MAPPINGS.get(group["displayName"], ""))
            if email and not member["accountEnabled"]:
                roles[email].append("disabled")
    rank = {"": 0, "read": 1, "write": 2, "admin": 3}
    return {email: None if "disabled" in found else (max(found, key=rank.__getitem__) or None)
            for email, found in roles.items()}


# settings -----------------------------------------------------------------------------------

def test_settings__guide_config_with_mappings__accepted_with_defaults() -> None:
    # Given the guide's config plus group_mappings / When validated
    checked = AzureADConnector.validate_config({**GUIDE, "group_mappings": MAPPINGS})
    # Then it passes and the defaults are filled in
    assert checked["authority_url"] == "https://login.microsoftonline.com"
    assert checked["graph_url"] == "https://graph.microsoft.com"
    assert checked["sync_interval"] == 3600


@pytest.mark.parametrize(("field", "value", "words"), [
    ("group_mappings", {"APG_Admins": "owner"}, "must be one of"),
    ("tenant_id", "common", "must name one tenant"),
    ("tenant_id", "not a tenant!", "tenant"),
    ("client_id", "my-app", "GUID"),
    ("graph_api_version", "v2.0", "v1.0"),
    ("user_attributes", ["mail", "job title"], "not Graph properties"),
    ("group_filter", "startswith(displayName,'APG_)", "unterminated"),
    ("group_filter", "startswith(displayName,'APG_'", "parentheses"),
    ("authority_url", "http://login.example.com", "https://"),
    ("sync_interval", 10, "at least 60"),
    ("sync_groups", "yes", "true or false"),
])
def test_settings__bad_value__error_names_the_field(field: str, value: Any, words: str) -> None:
    # Given the guide's config with one bad field / When validated / Then refused, naming it
    with pytest.raises(ConfigError, match=rf"integrations\.azure_ad\.{field}.*{words}"):
        AzureADConnector.validate_config({**GUIDE, field: value})


def test_settings__no_filter_and_no_mappings__refused() -> None:
    # Given neither group_filter nor group_mappings / Then refused: which groups to sync?
    config = {k: v for k, v in GUIDE.items() if k != "group_filter"}
    with pytest.raises(ConfigError, match="group_filter is required"):
        AzureADConnector.validate_config(config)


def test_settings__sync_groups_false_without_groups__accepted() -> None:
    config = {k: v for k, v in GUIDE.items() if k != "group_filter"}
    assert AzureADConnector.validate_config({**config, "sync_groups": False})


def test_repr__configured__client_secret_masked() -> None:
    built = connector({**GUIDE, "group_mappings": MAPPINGS})
    assert GUIDE["client_secret"] not in repr(built) and "***" in repr(built)


# pure mapping -------------------------------------------------------------------------------

def test_token_request__defaults__microsoft_endpoint_and_graph_scope() -> None:
    config = AzureADConnector.validate_config(GUIDE)
    assert token_url(config) == ("https://login.microsoftonline.com/"
                                 f"{GUIDE['tenant_id']}/oauth2/v2.0/token")
    assert scope(config) == "https://graph.microsoft.com/.default"


@pytest.mark.parametrize(("user", "email"), [
    ({"mail": "Alice@Contoso.com", "userPrincipalName": "a@contoso.com"}, "alice@contoso.com"),
    ({"mail": None, "userPrincipalName": "Frank@Contoso.com"}, "frank@contoso.com"),
    ({"mail": None, "userPrincipalName": "x_partner.example#EXT#@c.onmicrosoft.com"}, None),
    ({"mail": "", "userPrincipalName": None}, None),
])
def test_user_email__mail_or_upn__address_or_none(user: dict[str, Any], email: str | None,
                                                  ) -> None:
    assert user_email(user) == email


def graph_user(**props: Any) -> dict[str, Any]:
    return {"@odata.type": USER, "id": "u1", "mail": "u1@contoso.com", "displayName": "U One",
            "userPrincipalName": "u1@contoso.com", "accountEnabled": True, "jobTitle": "Dev",
            "department": "Eng", **props}


def test_directory_user__several_mapped_groups__highest_role_and_sorted_groups() -> None:
    # Given a user in a write and an admin group / When mapped / Then admin, both groups
    user = directory_user(graph_user(), ["APG_QA", "APG_Admins", "APG_Unmapped"],
                          {"group_mappings": MAPPINGS, "user_attributes": ["jobTitle"]})
    assert user == DirectoryUser("u1@contoso.com", True, "admin",
                                 ["APG_Admins", "APG_QA", "APG_Unmapped"], {"jobTitle": "Dev"})


@pytest.mark.parametrize("enabled", [False, None])
def test_directory_user__account_disabled_or_unreported__inactive_without_role(
        enabled: bool | None) -> None:
    user = directory_user(graph_user(accountEnabled=enabled), ["APG_Admins"],
                          {"group_mappings": MAPPINGS})
    assert user is not None and (user.active, user.role) == (False, None)


def test_directory_user__attributes__only_the_configured_ones() -> None:
    user = directory_user(graph_user(), ["APG_QA"],
                          {"group_mappings": MAPPINGS, "user_attributes": ["id", "department"]})
    assert user is not None and user.attributes == {"id": "u1", "department": "Eng"}


def test_directory_user__no_usable_address__none() -> None:
    assert directory_user(graph_user(mail=None, userPrincipalName="x#EXT#@t.com"), ["APG_QA"],
                          {"group_mappings": MAPPINGS}) is None


@pytest.mark.parametrize(("kind", "expected"), [(USER, True), (DEVICE, False),
                                                (SERVICE_PRINCIPAL, False), (GROUP, False)])
def test_is_user__odata_type__only_users(kind: str, expected: bool) -> None:
    assert is_user({"@odata.type": kind, "id": "x"}) is expected


def test_merge__same_email_twice__one_record_highest_active_role() -> None:
    merged = merge_by_email([DirectoryUser("a@c.com", False, None, ["APG_Admins"]),
                    DirectoryUser("a@c.com", True, "read", ["APG_QA"]),
                    DirectoryUser("b@c.com", True, "write", ["APG_Developers"])])
    assert merged == [DirectoryUser("a@c.com", True, "read", ["APG_Admins", "APG_QA"]),
                      DirectoryUser("b@c.com", True, "write", ["APG_Developers"])]


def test_group_filters__no_filter__mapped_names_quoted_in_batches_of_15() -> None:
    # Given no group_filter and 16 mapped names, one with a quote
    mappings = {f"G{i:02d}": "read" for i in range(15)} | {"O'Brien Team": "admin"}
    # When the groups queries are built / Then two in-clauses, the quote doubled
    filters = group_filters({"group_mappings": mappings})
    assert len(filters) == 2 and filters[0].startswith("displayName in ('G00','G01',")
    assert filters[1] == "displayName in ('O''Brien Team')"
    assert odata_quote("it's") == "'it''s'"


@pytest.mark.parametrize(("expression", "advanced"), [
    ("startswith(displayName,'APG_')", False),
    ("displayName eq 'APG ne not endswith'", False),
    ("endswith(displayName,'_Admins')", True),
    ("displayName ne 'Finance'", True),
    ("not(startswith(displayName,'X'))", True),
])
def test_groups_query__advanced_operators__consistency_header_and_count(
        expression: str, advanced: bool) -> None:
    params, headers = groups_query(expression)
    assert needs_advanced_query(expression) is advanced
    assert (headers == {"ConsistencyLevel": "eventual"}) is advanced
    assert (params.get("$count") == "true") is advanced
    assert params["$filter"] == expression and params["$top"] == "999"


def test_members_params__attributes__status_fields_always_selected_once() -> None:
    params = members_params({"user_attributes": ["mail", "department"]})
    assert params["$select"] == "id,mail,userPrincipalName,accountEnabled,department"


# directory() against the fake ---------------------------------------------------------------

def test_directory__hundreds_of_users__every_page_fetched_and_roles_as_mapped(
        fake: FakeAzureAD) -> None:
    # Given 600 seeded users and a Graph that serves at most 100 per page
    # When the directory is read
    users = connector(fake.config()).directory()
    # Then every user of the APG_* groups is there with the mapped role, over several pages
    assert {u.email: u.role for u in users} == expected_roles(fake.tenant)
    assert len(users) > 400
    assert len([r for r in fake.graph_requests() if "$skiptoken" in r.query]) >= 3
    roles = {u.email: u.role for u in users}
    assert [roles[PEOPLE[k]] for k in ("alice", "bob", "carol", "frank", "hank")] == [
        "admin", "write", "read", "write", "read"]
    assert PEOPLE["gina"] not in roles


def test_directory__nested_group__members_get_the_parent_groups_role(fake: FakeAzureAD,
                                                                     ) -> None:
    # Given dave only in APG_Platform_Oncall (nested in APG_Admins), jack in Contractors
    # (nested in APG_Readers, and not picked by the filter)
    users = {u.email: u for u in connector(fake.config()).directory()}
    # Then both inherit through transitiveMembers
    assert (users[PEOPLE["dave"]].role, users[PEOPLE["dave"]].groups) == (
        "admin", ["APG_Admins", "APG_Platform_Oncall"])
    assert (users[PEOPLE["jack"]].role, users[PEOPLE["jack"]].groups) == ("read", ["APG_Readers"])
    assert all("transitiveMembers" in r.path for r in fake.graph_requests()[1:])


def test_directory__devices_service_principals_contacts__skipped(fake: FakeAzureAD) -> None:
    users = connector(fake.config()).directory()
    emails = {u.email for u in users}
    assert not any(e.startswith("contact") or "laptop" in e or "bot" in e for e in emails)
    assert all(u.email.endswith(("@contoso.com", "@partner.example")) for u in users)


def test_directory__disabled_user__inactive_with_no_role(fake: FakeAzureAD) -> None:
    users = {u.email: u for u in connector(fake.config()).directory()}
    erin = users[PEOPLE["erin"]]
    assert (erin.active, erin.role, erin.groups) == (False, None, ["APG_Admins"])
    assert all(u.role is None for u in users.values() if not u.active)


def test_directory__user_attributes__only_those_stored(fake: FakeAzureAD) -> None:
    config = fake.config(user_attributes=["jobTitle"])
    users = connector(config).directory()
    assert all(set(u.attributes) == {"jobTitle"} for u in users)
    select = fake.graph_requests("transitiveMembers")[0].query["$select"]
    assert select.split(",") == ["id", "mail", "userPrincipalName", "accountEnabled", "jobTitle"]


def test_directory__sync_groups_false__every_user_without_groups_or_roles(fake: FakeAzureAD,
                                                                          ) -> None:
    # Given sync_groups false (and no group settings at all)
    config = {k: v for k, v in fake.config(sync_groups=False).items()
              if k not in ("group_filter", "group_mappings")}
    # When the directory is read
    users = {u.email: u for u in connector(config).directory()}
    # Then every user with an address is there (gina too), none with a group or role
    tenant_users = [o for o in fake.tenant.objects.values() if o["@odata.type"] == USER]
    assert len(users) == len([u for u in tenant_users if user_email(u)]) > 600
    assert PEOPLE["gina"] in users and not users[PEOPLE["erin"]].active
    assert all(u.role is None and u.groups == [] for u in users.values())
    assert fake.graph_requests("groups") == [] and len(fake.graph_requests("users")) >= 7


def test_directory__mappings_without_filter__mapped_groups_only(fake: FakeAzureAD) -> None:
    # Given no group_filter: the groups named in group_mappings are synced
    config = {k: v for k, v in fake.config().items() if k != "group_filter"}
    users = {u.email: u.role for u in connector(config).directory()}
    # Then APG_Platform_Oncall is not synced on its own, but dave still arrives via Admins
    assert users[PEOPLE["dave"]] == "admin"
    sent = fake.graph_requests("groups")[0].query["$filter"]
    assert sent == "displayName in ('APG_Admins','APG_Developers','APG_QA','APG_Readers')"


def test_directory__endswith_filter__sent_as_advanced_query(fake: FakeAzureAD) -> None:
    # Given a filter the fake (like Graph) only serves as an advanced query
    users = connector(fake.config(group_filter="endswith(displayName,'_Admins')")).directory()
    # Then the header and $count=true went with it, and only APG_Admins was synced
    groups_call = fake.graph_requests("groups")[0]
    assert groups_call.header("ConsistencyLevel") == "eventual"
    assert groups_call.query["$count"] == "true"
    assert {g for u in users for g in u.groups} == {"APG_Admins"}


def test_token__two_directory_reads_within_lifetime__one_token_request(fake: FakeAzureAD,
                                                                        ) -> None:
    # Given one connector / When the directory is read twice
    built = connector(fake.config())
    before = auth.requests_made
    built.directory()
    built.directory()
    # Then a single token was requested, form-encoded, with Graph's .default scope
    assert len(fake.token_requests) == 1 and auth.requests_made - before == 1
    sent = fake.token_requests[0]
    assert sent.header("Content-Type") == "application/x-www-form-urlencoded"
    assert b"grant_type=client_credentials" in sent.body
    assert f"scope={requests.utils.quote(fake.base_url + '/.default', safe='')}".encode() \
        in sent.body


def test_token__expired__a_new_one_requested() -> None:
    # Given tokens that live 2 s (renewed 1 s before, as the cache halves short lifetimes)
    with FakeAzureAD(users=50, token_lifetime_s=2) as short:
        built = connector(short.config())
        built.directory()
        built.directory()
        assert len(short.token_requests) == 1
        # When the lifetime has run out and the directory is read again
        time.sleep(1.2)
        built.directory()
        # Then exactly one more token was requested
        assert len(short.token_requests) == 2


def test_token__revoked__graph_401_then_fresh_token_and_success(fake: FakeAzureAD) -> None:
    # Given a cached token that Graph no longer accepts
    built = connector(fake.config())
    built.directory()
    fake.revoke_tokens()
    # When the directory is read again / Then it renews the token once and succeeds
    assert len(built.directory()) > 400
    assert len(fake.token_requests) == 2


def test_directory__graph_401_twice__auth_error_without_secret_or_token(fake: FakeAzureAD,
                                                                       ) -> None:
    # Given Graph refuses the token, and the fresh one too
    built = connector(fake.config())
    fake.fail_next(401, times=2, webhook_url=graph_url(fake))
    # When / Then AuthError with Graph's code, no secret, after exactly one renewal
    with pytest.raises(AuthError, match="InvalidAuthenticationToken") as caught:
        built.directory()
    assert fake.client_secret not in str(caught.value) and "eyJ" not in str(caught.value)
    assert len(fake.token_requests) == 2


def test_directory__wrong_client_secret__auth_error_with_aadsts_text(fake: FakeAzureAD) -> None:
    built = connector(fake.config(client_secret="wrong-secret-value"))
    with pytest.raises(AuthError, match="invalid_client: AADSTS7000215") as caught:
        built.directory()
    assert "wrong-secret-value" not in str(caught.value)
    assert fake.graph_requests() == []


def test_directory__unknown_tenant__auth_error_naming_aadsts90002(fake: FakeAzureAD) -> None:
    built = connector(fake.config(tenant_id="fabrikam.onmicrosoft.com"))
    with pytest.raises(AuthError, match="AADSTS90002"):
        built.directory()


def test_directory__missing_permission__403_auth_error(fake: FakeAzureAD) -> None:
    fake.granted = False
    with pytest.raises(AuthError, match="Authorization_RequestDenied"):
        connector(fake.config()).directory()


def test_directory__graph_429__rate_limited_with_retry_after(fake: FakeAzureAD) -> None:
    fake.fail_next(429, webhook_url=graph_url(fake), retry_after_s=7)
    with pytest.raises(RateLimited) as caught:
        connector(fake.config()).directory()
    assert caught.value.retry_after_s == 7


def test_directory__rate_limit_window__429_from_graph_carries_its_wait(fake: FakeAzureAD,
                                                                      ) -> None:
    # Given Graph allows 3 calls per 30 s / When a sync needs more
    fake.rate_limit(3, per_s=30)
    with pytest.raises(RateLimited) as caught:
        connector(fake.config()).directory()
    # Then the wait is Graph's Retry-After (whole seconds, up to the window)
    assert caught.value.retry_after_s is not None and 1 <= caught.value.retry_after_s <= 30


def test_directory__token_endpoint_429__rate_limited_with_its_wait(fake: FakeAzureAD) -> None:
    # Given the first request (the token request) is throttled, in Entra's format
    fake.fail_next(429, retry_after_s=9)
    with pytest.raises(RateLimited, match="AADSTS90055") as caught:
        connector(fake.config()).directory()
    assert caught.value.retry_after_s == 9 and fake.graph_requests() == []


def test_next_link__other_host__refused_before_the_token_is_sent() -> None:
    graph = Graph(AzureADConnector.validate_config(GUIDE), set())
    with pytest.raises(Rejected, match="refusing to send the token elsewhere"):
        graph._next_link({"@odata.nextLink": "https://evil.example/v1.0/groups?$skiptoken=x"},
                         set())


def test_directory__graph_503__unavailable_with_retry_after(fake: FakeAzureAD) -> None:
    fake.fail_next(503, webhook_url=graph_url(fake), retry_after_s=4)
    with pytest.raises(Unavailable) as caught:
        connector(fake.config()).directory()
    assert caught.value.retry_after_s == 4 and "serviceNotAvailable" in str(caught.value)


def test_directory__page_two_fails__raises_and_returns_nothing(fake: FakeAzureAD) -> None:
    # Given the second page of a collection answers 500
    fake.fail_page(500, page=2)
    # When / Then the whole read fails (never a partial directory)
    with pytest.raises(Unavailable, match="InternalServerError"):
        connector(fake.config()).directory()
    assert any("$skiptoken" in r.query for r in fake.graph_requests())


def test_directory__unknown_attribute__rejected_with_graphs_message(fake: FakeAzureAD) -> None:
    built = connector(fake.config(user_attributes=["mail", "favouriteColour"]))
    with pytest.raises(Rejected, match="favouriteColour"):
        built.directory()


def test_health_check__good_and_bad_secret__true_then_false(fake: FakeAzureAD) -> None:
    assert connector(fake.config()).health_check() is True
    assert connector(fake.config(client_secret="nope")).health_check() is False


# the fake enforces the contract ---------------------------------------------------------------

def token_form(fake: FakeAzureAD, **overrides: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": fake.client_id,
            "client_secret": fake.client_secret, "scope": f"{fake.base_url}/.default",
            **overrides}


@pytest.mark.parametrize(("overrides", "status", "error"), [
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"client_id": "00000000-0000-0000-0000-000000000000"}, 400, "unauthorized_client"),
    ({"client_secret": "bad"}, 401, "invalid_client"),
    ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope"),
    ({"scope": "https://other.example/.default"}, 400, "invalid_resource"),
])
def test_fake_token_endpoint__bad_grant__aadsts_error(fake: FakeAzureAD, overrides: dict[str, str],
                                                      status: int, error: str) -> None:
    url = f"{fake.base_url}/{fake.tenant_id}/oauth2/v2.0/token"
    answer = requests.post(url, data=token_form(fake, **overrides), timeout=5)
    assert answer.status_code == status and answer.json()["error"] == error
    assert answer.json()["error_description"].startswith("AADSTS")


def test_fake_token_endpoint__json_body__refused_as_missing_grant_type(fake: FakeAzureAD) -> None:
    url = f"{fake.base_url}/{fake.tenant_id}/oauth2/v2.0/token"
    answer = requests.post(url, json=token_form(fake), timeout=5)
    assert answer.status_code == 400 and "AADSTS900144" in answer.json()["error_description"]


def test_fake_graph__no_token_top_too_big_altered_next_link__refused(fake: FakeAzureAD) -> None:
    url = f"{fake.base_url}/{fake.tenant_id}/oauth2/v2.0/token"
    token = requests.post(url, data=token_form(fake), timeout=5).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    anonymous = requests.get(graph_url(fake), timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    too_big = requests.get(graph_url(fake), params={"$top": "1000"}, headers=bearer, timeout=5)
    assert too_big.status_code == 400 and "between 1 and 999" in too_big.text
    first = requests.get(graph_url(fake), params={"$top": "2"}, headers=bearer, timeout=5).json()
    altered = requests.get(first["@odata.nextLink"] + "&$select=id", headers=bearer, timeout=5)
    assert altered.status_code == 400
    verbatim = requests.get(first["@odata.nextLink"], headers=bearer, timeout=5)
    assert verbatim.status_code == 200 and len(verbatim.json()["value"]) == 2


# through the sync service (eager, unit database) ----------------------------------------------

async def test_sync__configured_through_service__roles_readable(service: ConfigService,
                                                               fake: FakeAzureAD) -> None:
    # Given the connector configured as the guide shows (plus mappings and the fake's URLs)
    await service.set_config("integrations.azure_ad", fake.config())
    # When the sync service runs it
    from workers import identity

    client = redis.Redis.from_url(redis_url(UNIT_DB), decode_responses=True)
    try:
        meta = identity.sync(client, service.namespace, "azure_ad")
    finally:
        client.close()
    # Then every mapped role is readable, and disabled users have none
    assert meta["status"] == "ok" and meta["users"] > 400
    assert await service.get_role(PEOPLE["alice"]) == "admin"
    assert await service.get_role(PEOPLE["bob"].upper()) == "write"
    assert await service.get_role(PEOPLE["erin"]) is None
