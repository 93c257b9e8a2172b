"""A vendor's wait (Retry-After, reset headers, body fields) is finite and capped, or None.

A wait of ``inf`` or a date in year 9999 would park a delivery forever; NaN compares false with
everything and would slip through every bound.
"""

from __future__ import annotations

import math

import pytest
import requests

from connectors import http
from connectors.auth0.api import rate_limit_wait as auth0_wait
from connectors.discord import DiscordConnector
from connectors.errors import RateLimited
from connectors.github.api import rate_limit_wait as github_wait
from connectors.gitlab.api import reset_wait_s as gitlab_wait
from connectors.jira.connector import reset_wait_s as jira_wait
from connectors.okta.mapping import rate_limit_wait as okta_wait
from tests.fakes.server import Reply
from tests.unit.loopback import ScriptedServer
from tests.unit.samples import make_event

HUGE_WAITS = ["inf", "Infinity", "1e12", "99999999999999999999",
              "Fri, 31 Dec 9999 23:59:59 GMT"]
"""Header values that ask for a wait far beyond any sensible one."""

NO_WAITS = ["nan", "NaN", "soon", ""]
"""Header values that name no wait at all."""


def answer_429(server: ScriptedServer, headers: dict[str, str], body: bytes = b"") -> RateLimited:
    """The ``RateLimited`` that ``http.check`` raises for the server's 429."""
    server.reply = Reply(429, body, {"Content-Type": "application/json", **headers})
    response = http.send("GET", f"{server.base_url}/api")
    with pytest.raises(RateLimited) as caught:
        http.check(response, vendor="vendor")
    return caught.value


def assert_bounded(wait_s: float | None) -> None:
    assert wait_s is not None and math.isfinite(wait_s)
    assert 0.0 <= wait_s <= http.MAX_VENDOR_WAIT_S


def test_max_vendor_wait__default__one_hour() -> None:
    assert http.MAX_VENDOR_WAIT_S == 3600.0


@pytest.mark.parametrize("value", HUGE_WAITS)
def test_check__429_with_huge_retry_after__wait_capped(
        scripted: ScriptedServer, value: str) -> None:
    error = answer_429(scripted, {"Retry-After": value})
    assert_bounded(error.retry_after_s)
    assert error.retry_after_s == http.MAX_VENDOR_WAIT_S


@pytest.mark.parametrize("value", ["-5", "-inf", "Mon, 01 Jan 1990 00:00:00 GMT"])
def test_check__429_with_past_or_negative_retry_after__zero(
        scripted: ScriptedServer, value: str) -> None:
    assert answer_429(scripted, {"Retry-After": value}).retry_after_s == 0.0


@pytest.mark.parametrize("value", NO_WAITS)
def test_check__429_with_garbage_retry_after__no_wait(scripted: ScriptedServer,
                                                      value: str) -> None:
    assert answer_429(scripted, {"Retry-After": value}).retry_after_s is None


@pytest.mark.parametrize("value", ["inf", "1e12", "nan", "-5", "253402300799"])
def test_check__429_with_odd_reset_header__finite_or_none(scripted: ScriptedServer,
                                                          value: str) -> None:
    wait_s = answer_429(scripted, {"X-RateLimit-Reset": value}).retry_after_s
    assert wait_s is None or (math.isfinite(wait_s) and 0 <= wait_s <= http.MAX_VENDOR_WAIT_S)


def test_discord__429_body_retry_after_infinite__wait_capped(scripted: ScriptedServer) -> None:
    # Given Discord's 429 whose JSON body says retry_after 1e999 (parsed as infinity)
    scripted.reply = Reply(429, b'{"message": "rate limited", "retry_after": 1e999}',
                           {"Content-Type": "application/json"})
    connector = DiscordConnector({"webhook_url": f"{scripted.base_url}/api/webhooks/1/tok"})
    with pytest.raises(RateLimited) as caught:
        connector.send_notification(make_event())
    assert_bounded(caught.value.retry_after_s)


def _response(server: ScriptedServer, status: int, headers: dict[str, str]) -> requests.Response:
    server.reply = Reply(status, b"{}", {"Content-Type": "application/json", **headers})
    return http.send("GET", f"{server.base_url}/api")


@pytest.mark.parametrize("value", ["inf", "1e12", "nan", "253402300799"])
def test_vendor_reset_waits__huge_or_nan_epoch__finite_and_capped(
        scripted: ScriptedServer, value: str) -> None:
    # Given each vendor's own reset header set to an absurd epoch second
    response = _response(scripted, 429, {
        "x-ratelimit-reset": value, "x-ratelimit-remaining": "0", "RateLimit-Reset": value,
        "X-Rate-Limit-Reset": value,
    })
    # Then every vendor's wait is finite and within the cap (or None: no wait known)
    for wait_s in (auth0_wait(response.headers, None), github_wait(response, None),
                   gitlab_wait(response), okta_wait(response.headers, 0.0)):
        assert wait_s is None or (math.isfinite(wait_s) and 0 <= wait_s <= http.MAX_VENDOR_WAIT_S)


def test_jira_reset__year_9999__capped() -> None:
    assert_bounded(jira_wait("9999-12-31T23:59:59Z"))


def test_gitlab_reset_time__year_9999__capped(scripted: ScriptedServer) -> None:
    response = _response(scripted, 429, {"RateLimit-ResetTime": "Fri, 31 Dec 9999 23:59:59 GMT"})
    assert_bounded(gitlab_wait(response))


def test_bounded_wait__values__finite_capped_or_none() -> None:
    assert http.bounded_wait(math.inf) == http.MAX_VENDOR_WAIT_S
    assert http.bounded_wait(-5.0) == 0.0
    assert http.bounded_wait(math.nan) is None
    assert http.bounded_wait(None) is None
    assert http.bounded_wait(12.5) == 12.5

