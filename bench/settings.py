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

GOAL_RAW_ASYNC_RATIO = 0.85
"""Goal: sequential ``set_config`` at least this share of a raw ``redis.asyncio`` MULTI."""

GOAL_GATHER_RATIO = 3.0
"""Goal: gathered ``set_config`` at least this many times the bare ``apply_async`` rate."""

GOAL_SPLUNK_RATIO = 10.0
"""Goal: Splunk batched by 100 at least this many times the events/s of one request each."""

GOAL_THROUGHPUT_RATIO = 0.60
"""Goal: deliveries/s to a webhook at least this share of Celery no-op tasks/s."""

GOAL_MEMORY_GROWTH = 0.10
"""Goal: worker RSS grows less than this between the two marks of a burst."""

GOAL_FANOUT_RATIO = 2.0
"""Goal: fan-out changes/s at least this many times Celery no-op tasks/s."""

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

THROUGHPUT_EVENTS, QUICK_THROUGHPUT_EVENTS = 2000, 200
"""Deliveries (and no-op tasks) per throughput run."""

THROUGHPUT_RUNS, QUICK_THROUGHPUT_RUNS = 3, 1
"""Alternated delivery / no-op runs; the medians are compared."""

MEMORY_MARKS, QUICK_MEMORY_MARKS = (10_000, 20_000), (300, 600)
"""Deliveries of the memory burst at which the worker's RSS is read."""

FANOUT_EVENTS, QUICK_FANOUT_EVENTS = 10_000, 300
"""Changes per fan-out run, each to Splunk, New Relic and a Slack digest."""

FANOUT_RUNS, QUICK_FANOUT_RUNS = 3, 1
"""Fan-out runs; the median is compared."""

FANOUT_BATCH = 100
"""``batch_size`` of every fan-out connector (Splunk HEC, New Relic, the Slack digest)."""

WORKER_PHASE_BUDGET_S = 300.0
"""Longest one worker run may take before it is stopped and reported incomplete."""

THROUGHPUT_ENVIRONMENT, FANOUT_ENVIRONMENT = "throughput", "fanout"
