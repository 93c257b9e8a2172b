"""Vendor calls honour the standard proxy variables (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).

The shared client reads them once per vendor origin, not on every call; ``http.reset()``
forgets what it read. Every test runs under ``loopback_only``, and the proxy is a loopback
server that records what reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors import http
from tests.unit.loopback import ScriptedServer

pytestmark = pytest.mark.usefixtures("loopback_only")

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                   "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No proxy variables from the machine; the client forgets what it read, before and after."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    http.reset()
    yield monkeypatch
    http.reset()


def test_send__http_proxy_set__call_goes_through_the_proxy(
        environment: pytest.MonkeyPatch) -> None:
    # Given a vendor and a proxy on loopback, and HTTP_PROXY naming the proxy
    with ScriptedServer() as vendor, ScriptedServer() as proxy:
        environment.setenv("HTTP_PROXY", proxy.base_url)
        # When a call is made to the vendor
        http.send("POST", f"{vendor.base_url}/hook", json={"n": 1}, timeout=5)
        # Then the proxy received it, addressed to the vendor, and the vendor saw nothing direct
        assert [r.header("Host") for r in proxy.requests] == [f"127.0.0.1:{vendor.port}"]
        assert proxy.requests[0].json == {"n": 1}
        assert vendor.requests == []


def test_send__vendor_in_no_proxy__call_goes_direct(environment: pytest.MonkeyPatch) -> None:
    # Given HTTP_PROXY set, and NO_PROXY naming the vendor's host
    with ScriptedServer() as vendor, ScriptedServer() as proxy:
        environment.setenv("HTTP_PROXY", proxy.base_url)
        environment.setenv("NO_PROXY", "127.0.0.1")
        # When a call is made to the vendor
        http.send("POST", f"{vendor.base_url}/hook", json={"n": 2}, timeout=5)
        # Then it went straight to the vendor
        assert [r.json for r in vendor.requests] == [{"n": 2}]
        assert proxy.requests == []


def test_send__proxy_variable_changed__read_again_only_after_reset(
        environment: pytest.MonkeyPatch) -> None:
    # Given a first call made with no proxy configured
    with ScriptedServer() as vendor, ScriptedServer() as proxy:
        http.send("GET", f"{vendor.base_url}/a", timeout=5)
        # When HTTP_PROXY is set afterwards, in the same process
        environment.setenv("HTTP_PROXY", proxy.base_url)
        http.send("GET", f"{vendor.base_url}/b", timeout=5)
        # Then the setting read at the first call holds, until the client is reset
        http.reset()
        http.send("GET", f"{vendor.base_url}/c", timeout=5)
        assert [r.path for r in vendor.requests] == ["/a", "/b"]
        assert [r.path for r in proxy.requests] == ["/c"]
