"""A real ``apgcfg serve`` process for the API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ApiServer:
    """``python -m apgcfg.cli serve`` on a free loopback port."""

    def __init__(self, redis_url: str, tenant: str, log_dir: Path, *,
                 environment: str = "production") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = ["--redis-url", redis_url, "--tenant", tenant, "--environment",
                        environment]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("CELERY_TASK_ALWAYS_EAGER", None)
        self.log_path = log_dir / f"api-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apgcfg.cli", "serve", "--port", str(self.port),
             *self.options], cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> ApiServer:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.log_path.read_text()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another apgcfg command against the same Redis and namespace."""
        return subprocess.run([sys.executable, "-m", "apgcfg.cli", *args, *self.options],
                              cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)

    def new_key(self, role: str) -> str:
        done = self.cli("apikeys", "create", "--role", role, "--name", f"test-{role}")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()
