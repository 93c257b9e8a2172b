"""Real ``celery -A workers worker`` processes, for integration tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 45.0


class WorkerFailed(AssertionError, RuntimeError):
    """The worker exited or never became ready; the message holds its log."""


class WorkerProcess:
    """One worker subprocess consuming ``queues`` (all three by default), logging to a file."""

    def __init__(self, redis_url: str, log_dir: Path, *, concurrency: int = 2,
                 extra_env: dict[str, str] | None = None, prefix: str = "itest",
                 queues: str = "high,medium,low", rate_limits: bool = False,
                 app: str = "workers") -> None:
        """``rate_limits``: whether the connectors' rate limits apply (off by default: the
        fakes do not limit unless told to, and tests that send many changes would wait);
        ``app``: the Celery app (``bench.noop`` for the benchmarks' no-op baseline)."""
        self.app = app
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = log_dir / f"{self.name.split('@')[0]}.log"
        env = {**os.environ, "CONFIG_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
               "APGCFG_RELAY_CLAIM_IDLE_MS": "3000", "APGCFG_HTTP_TIMEOUT_S": "2,3",
               "APGCFG_RATE_LIMITS": "1" if rate_limits else "0", **(extra_env or {})}
        env.pop("CELERY_TASK_ALWAYS_EAGER", None)
        command = [sys.executable, "-m", "celery", "-A", app, "worker",
                   "-Q", queues, "-c", str(concurrency), "-n", self.name,
                   "--without-mingle", "--without-gossip", "--loglevel", "INFO"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> WorkerProcess:
        """Block until the worker logs 'ready' (and its relay started, for the ``workers``
        app), or fail with its log."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log()
            if " ready." in text and (self.app != "workers" or "outbox relay started" in text):
                return self
            if self.proc.poll() is not None:
                raise WorkerFailed(f"worker exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        raise WorkerFailed(f"worker not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        """Process ids of the worker's pool children."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def kill(self) -> None:
        """SIGKILL the whole process group: main process and pool children, no clean-up."""
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._signal_group(signal.SIGKILL)
        self._log.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
