"""Fuzz the running HTTP API from its own OpenAPI document with schemathesis.

Every check (no 5xx, documented status codes, content types and response schemas, Allow
headers, auth that cannot be skipped, ...) over generated and mutated requests. The
schemathesis CLI drives it: it is the tool's stable interface.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import redis_url
from tests.integration.apiserver import ApiServer

pytestmark = pytest.mark.integration

FUZZ_DB = 8
EXAMPLES_PER_OPERATION = 40
FUZZ_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def fuzzed_api(redis_server: str, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[ApiServer]:
    server = ApiServer(redis_url(FUZZ_DB), "fuzz", tmp_path_factory.mktemp("fuzz"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def schemathesis_run(api: ApiServer, key: str, examples: int) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [str(st), "run", f"{api.url}/openapi.json", "--header", f"Authorization: Bearer {key}",
         "--checks", "all", "--max-examples", str(examples), "--generation-deterministic"],
        capture_output=True, text=True, timeout=FUZZ_TIMEOUT_S, check=False)


@pytest.mark.parametrize(("role", "examples"), [("admin", EXAMPLES_PER_OPERATION), ("read", 15)])
def test_api__fuzzed_from_its_openapi_document__every_check_passes(
        fuzzed_api: ApiServer, role: str, examples: int) -> None:
    # Given a running server and a key of this role
    key = fuzzed_api.new_key(role)
    # When schemathesis fuzzes every operation
    done = schemathesis_run(fuzzed_api, key, examples)
    # Then no check failed (no 500, every response as documented)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "Tested: 14" in done.stdout
