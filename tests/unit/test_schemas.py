"""integrations.schemas never makes the service fetch anything: remote references are refused."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from config_core import ConfigError, ConfigService
from config_core.schemas import SchemaError, Schemas


@pytest.fixture
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback socket that records whether anything connected to it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(2)
    seen: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        seen.append(b"connected")
        conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/schema.json", seen
    server.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("ref", [
    "http://169.254.169.254/latest/meta-data/", "https://example.com/s.json",
    "file:///etc/passwd", "other.json#/definitions/x", "//evil.example/s.json",
])
async def test_set_schemas__remote_ref__refused_naming_pattern_and_ref(
        service: ConfigService, ref: str) -> None:
    # Given a schema that refers to a document outside itself, nested in a property
    schemas = {"app.*": {"type": "object", "properties": {"a": {"$ref": ref}}}}
    # When stored / Then refused, naming the pattern and the reference; nothing written
    with pytest.raises(ConfigError, match=r"integrations\.schemas\['app\.\*'\].*remote") as err:
        await service.set_config("integrations.schemas", schemas)
    assert ref in str(err.value)
    assert await service.get_config("integrations.schemas", None) is None
    assert await service.history("integrations.schemas") == []


async def test_set_schemas__local_ref__still_resolved(service: ConfigService) -> None:
    # Given a schema using a local definition
    await service.set_config("integrations.schemas", {"app.port": {
        "$defs": {"port": {"type": "integer", "maximum": 65535}}, "$ref": "#/$defs/port"}})
    # When / Then a value is checked against the referenced definition
    await service.set_config("app.port", 5432)
    with pytest.raises(ConfigError, match="65535"):
        await service.set_config("app.port", 70000)


def test_schemas_check__remote_ref_already_stored__refused_without_fetching(
        listener: tuple[str, list[bytes]]) -> None:
    # Given schemas stored before remote references were refused
    url, seen = listener
    schemas = Schemas()
    schemas.load(json.dumps({"app.*": {"$ref": url}}), 1)
    # When a value is checked / Then refused as a schema error, and nothing was fetched
    with pytest.raises(SchemaError, match="cannot be resolved"):
        schemas.check("app.x", 1)
    assert seen == []
