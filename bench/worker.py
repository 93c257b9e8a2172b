"""A real ``celery -A workers worker`` subprocess on the bench database (relay included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench import settings

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the worker's working directory and PYTHONPATH."""

STOP_TIMEOUT_S = 15.0
"""How long a warm shutdown (SIGTERM) may take before the process group is SIGKILLed."""


class WorkerProcess:
    """One worker consuming high,medium,low in its own process group, logging to a file."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, "CONFIG_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
        env.pop("CELERY_TASK_ALWAYS_EAGER", None)
        command = [sys.executable, "-m", "celery", "-A", "workers", "worker",
                   "-Q", "high,medium,low", "-c", str(settings.WORKER_CONCURRENCY),
                   "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
                   "--loglevel", "INFO"]
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        """Block until the log says ' ready.' and 'outbox relay started'; RuntimeError if not."""
        deadline = time.monotonic() + settings.WORKER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log()
            if " ready." in text and "outbox relay started" in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {settings.WORKER_READY_TIMEOUT_S}s:\n"
                           f"{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to the group), then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._signal_group(signal.SIGKILL)  # pool children that outlived the main process
        self._log.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
