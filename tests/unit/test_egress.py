"""Vendor calls reach only public addresses, or internal ones the operator allowed; no redirects.

The suite allows loopback in ``tests/conftest.py``; tests here clear or narrow that allow-list.
Every test runs under ``loopback_only``: a refusal that failed would be caught before a packet
left this machine.
"""

from __future__ import annotations

import logging

import pytest

from config_core import ConfigService
from config_core.errors import ConfigError
from connectors import http
from connectors.errors import PermanentError, TransportError
from connectors.settings import dict_of_urls, http_url
from tests.fakes.server import Reply
from tests.unit.loopback import ScriptedServer

ALLOW_ENV = "APGCFG_ALLOWED_NETWORKS"

pytestmark = pytest.mark.usefixtures("loopback_only")

BLOCKED_HOSTS = [
    "127.0.0.1", "127.1.2.3", "[::1]", "169.254.169.254", "[fe80::1]", "10.0.0.1",
    "172.16.0.1", "172.31.255.254", "192.168.1.1", "[fc00::1]", "[fd12:3456::1]", "0.0.0.0",
    "[::]", "224.0.0.1", "[ff02::1]", "240.0.0.1", "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]", "[::ffff:10.0.0.1]", "localhost",
]
"""Literal addresses (and ``localhost``) no vendor call may reach unless allowed."""


# set time ------------------------------------------------------------------------------------


async def test_set_config__loopback_webhook_without_allow_list__config_error_names_field(
        service: ConfigService, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no allow-list (the default)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    # When a webhook URL points at loopback
    with pytest.raises(ConfigError) as caught:
        await service.set_config("integrations.discord",
                                 {"webhook_url": "http://127.0.0.1:9/api/webhooks/1/x"})
    # Then the field is named, the path (the token) is not
    assert "webhook_url" in str(caught.value)
    assert "/api/webhooks" not in str(caught.value)


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
def test_http_url__internal_host_without_allow_list__refused(
        host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    problem = http_url(f"https://{host}/latest/meta-data")
    assert problem is not None and ALLOW_ENV in problem and "meta-data" not in problem


def test_http_url__metadata_address_with_loopback_allowed__refused() -> None:
    # Given the suite's allow-list (loopback only), the metadata service is still refused
    assert http_url("https://169.254.169.254/latest/meta-data") is not None


def test_http_url__private_network_allowed__https_and_http_accepted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "10.0.0.0/8, jenkins.corp.internal")
    assert http_url("https://10.1.2.3:8443/jenkins") is None
    assert http_url("http://10.1.2.3:8080/jenkins") is None
    assert http_url("http://jenkins.corp.internal:8080/") is None
    assert http_url("https://192.168.1.1/") is not None


def test_http_url__plain_http_to_public_host__refused() -> None:
    assert http_url("http://example.com/hook") is not None
    assert http_url("https://example.com/hook") is None


def test_dict_of_urls__one_url_internal__refused_naming_its_entry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    problem = dict_of_urls({"ok": "https://example.com/a", "db": "https://10.0.0.1/b/secret"})
    assert problem is not None and "'db'" in problem and "secret" not in problem


def test_allow_list__malformed_network__config_error_names_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "10.0.0.0/33")
    with pytest.raises(ConfigError, match=ALLOW_ENV):
        http_url("https://10.0.0.1/")


# send time -----------------------------------------------------------------------------------


def test_send__loopback_without_allow_list__refused_before_any_request(
        scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a real loopback server and no allow-list
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    # When a vendor call targets it
    with pytest.raises(PermanentError) as caught:
        http.send("POST", f"{scripted.base_url}/api/webhooks/1/secret-token", json={})
    # Then nothing reached it, and the error names the host and the setting, not the path
    assert scripted.requests == []
    text = str(caught.value)
    assert "127.0.0.1" in text and ALLOW_ENV in text and "secret-token" not in text


def test_send__host_name_resolving_to_loopback__refused_after_resolution(
        scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a host name (not a literal address) that resolves to loopback, and no allow-list
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(PermanentError) as caught:
        http.send("GET", f"http://localhost:{scripted.port}/hook")
    assert scripted.requests == [] and "localhost" in str(caught.value)


def test_send__loopback_allowed_by_name__sent(
        scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "localhost")
    assert http.send("GET", f"http://localhost:{scripted.port}/hook").status_code == 200
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("host", [h for h in BLOCKED_HOSTS if h != "localhost"
                                  and not h.startswith(("127.", "[::1]", "[::ffff:127."))])
def test_send__internal_literal_address__refused_without_connecting(host: str) -> None:
    # Given the suite's allow-list (loopback only; loopback refusal has its own test) and the
    # guard against leaving this machine
    # When a vendor call targets an internal literal address, Then it is refused before
    # connecting (the guard would turn a connect into an AssertionError)
    with pytest.raises(PermanentError, match="APGCFG_ALLOWED_NETWORKS"):
        http.send("GET", f"http://{host}:9/latest/meta-data/iam", timeout=(0.5, 0.5))


# redirects -----------------------------------------------------------------------------------


def test_send__302_to_another_server__not_followed_permanent_error_without_location() -> None:
    # Given a loopback "vendor" that redirects to another loopback server
    with ScriptedServer() as target, ScriptedServer() as vendor:
        location = f"{target.base_url}/latest/meta-data/iam/security-credentials/role"
        vendor.reply = Reply(302, f"moved to {location}".encode(), {"Location": location})
        # When a vendor call gets the 302
        with pytest.raises(PermanentError) as caught:
            http.send("POST", f"{vendor.base_url}/api/webhooks/1/secret-token", json={})
        # Then the redirect is not followed and the error does not carry where it pointed
        assert target.requests == [] and len(vendor.requests) == 1
        text = str(caught.value)
        assert "302" in text and "redirects are not followed" in text
        assert "meta-data" not in text and str(target.port) not in text
        assert "secret-token" not in text


def test_send__caller_reads_redirect_itself__answer_returned_unfollowed() -> None:
    # Given a vendor whose 303 is an answer to read (Jenkins' "already queued")
    with ScriptedServer() as target, ScriptedServer() as vendor:
        vendor.reply = Reply(303, b"", {"Location": f"{target.base_url}/queue/item/7/"})
        response = http.send("POST", f"{vendor.base_url}/job/x/build", accept_redirect=True)
        assert response.status_code == 303 and target.requests == []


def test_send__nothing_listens__no_log_line_shows_the_webhook_token(
        caplog: pytest.LogCaptureFixture) -> None:
    # Given a webhook URL whose path holds its token, on a loopback port nothing listens on
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/webhooks/123/tok-secret-9f3a"
    # When the call is tried (urllib3 retries the connection before giving up)
    with caplog.at_level(logging.DEBUG), pytest.raises(TransportError) as raised:
        http.send("POST", url, secrets={"tok-secret-9f3a"}, json={}, timeout=1)
    # Then neither the logs nor the error show the token
    assert "tok-secret-9f3a" not in caplog.text + str(raised.value)
