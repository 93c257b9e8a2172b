"""Every default of the benchmark, each a named constant."""

from __future__ import annotations

import os

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
"""Dedicated database; FLUSHDB'd at the start of every run (``APGCFG_BENCH_REDIS`` overrides)."""

WRITES = 3000
"""Changes per write-throughput measurement (``--writes``)."""

LATENCY_SAMPLES = 200
"""Changes timed one at a time through a real worker (``--latency-samples``)."""

QUICK_WRITES, QUICK_LATENCY_SAMPLES = 500, 50
"""The ``--quick`` smoke run."""

WARMUP_WRITES = 50
"""Untimed operations per write method first (connections, script load, queue declare)."""

ROUNDS = 10
"""The write methods run interleaved in this many rounds, so machine-load drift hits each alike."""

GATHER_CHUNK = 50
"""Concurrent ``set_config`` calls per ``asyncio.gather``."""

MEASURE_BUDGET_S = 60.0
"""Longest any one write measurement may run; it stops early and reports what it did."""

LATENCY_WARMUP = 20
"""Untimed end-to-end changes before the latency samples."""

LATENCY_PAUSE_S = 0.02
"""Pause between latency samples, so the worker is idle when each change starts."""

SAMPLE_TIMEOUT_S = 10.0
"""A latency sample whose webhook call has not arrived by then counts as lost."""

LATENCY_BUDGET_S = 180.0
"""Longest the whole latency phase may take (samples after it are not taken)."""


WORKER_CONCURRENCY = 2
"""Prefork pool size of the benchmark worker (``-c``)."""

BACKLOG_LIMIT = 10**7
"""``integrations.max_backlog`` while writing with no worker, so no write is refused."""

TENANT = "bench"
WRITE_ENVIRONMENT = "writes"
LATENCY_ENVIRONMENT = "latency"
"""Namespaces the benchmark writes in (tenant ``bench``)."""

GOAL_WRITE_RATIO = 2.0
"""Goal: sequential ``set_config`` at least this many times the bare ``apply_async`` rate."""

GOAL_P99_MS = 50.0
"""Goal: p99 of set_config-to-webhook latency below this many milliseconds."""


def redis_url() -> str:
    """``APGCFG_BENCH_REDIS`` or the dedicated default database."""
    return os.environ.get("APGCFG_BENCH_REDIS") or DEFAULT_REDIS_URL

SPLUNK_BATCHED_EVENTS = 5000
"""Changes sent to Splunk with batch_size 100 (``--quick``: 1000)."""

SPLUNK_UNBATCHED_EVENTS = 500
"""Changes sent to Splunk with batch_size 1, one request each (``--quick``: 200)."""

SPLUNK_TIMEOUT_S = 180.0
"""Longest a Splunk mode waits for its events to be indexed."""
