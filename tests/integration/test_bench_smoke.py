"""``python -m bench.run --quick`` end to end: every figure is printed with its goal and verdict.

The values are not checked (performance belongs in ``make bench``); the test checks that the
quick run completes on a real Redis with real workers and reports every figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import redis_url
from tests.integration.workerproc import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BENCH_DB = 7
"""The quick run FLUSHDBs its database: one no other test uses."""

FIGURES = (
    "writer: set_config / raw redis.asyncio MULTI",
    "writer: set_config gathered / apply_async",
    "writer: set_config / apply_async",
    "idle latency: webhook p99 (ms)",
    "latency under backlog: p99 / idle p99 (recommended)",
    "latency under backlog: p99 / idle p99 (single worker)",
    "Splunk: batched / one request per event",
    "worker: deliveries/s / no-op tasks/s",
    "memory: worker RSS growth",
    "fan-out: changes/s / no-op tasks/s",
)

GOAL_LINE = re.compile(r"^  (?P<figure>\S.*?)\s+(?P<value>-?[\d.,]+\S*)\s+"
                       r"goal (?:>=|<=|<) [\d.]+\S*: "
                       r"(?P<verdict>MET|NOT MET)$")


def test_quick_bench__run_once__every_figure_printed_with_goal_and_verdict(
        redis_server: str) -> None:
    # Given the benchmark pointed at a database of the test Redis
    env = {**os.environ, "APGCFG_BENCH_REDIS": redis_url(BENCH_DB)}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    # When the quick run runs
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=540)
    # Then it completes, and its summary lists every figure with a goal and MET or NOT MET
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("\n== goals ==\n", 1)[1]
    lines = [GOAL_LINE.match(line) for line in summary.splitlines() if " goal " in line]
    assert all(lines), summary
    printed = [m["figure"] for m in lines if m]
    for figure in FIGURES:
        assert sum(name.startswith(figure) for name in printed) == 1, (figure, summary)
    assert re.search(r"\d+ of \d+ goals met", summary)
    # and each figure is printed in its own phase too, not only in the summary
    body = done.stdout.split("\n== goals ==\n", 1)[0]
    for figure in FIGURES:
        assert re.search(rf"^  {re.escape(figure)}.* goal .*: (MET|NOT MET)$", body, re.M), figure
