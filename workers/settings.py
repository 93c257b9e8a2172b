"""Celery settings for ``workers.app`` (read with ``config_from_object``).

Broker and result backend default to ``CONFIG_REDIS_URL``; ``CELERY_BROKER_URL`` and
``CELERY_RESULT_BACKEND`` override them.
"""

from __future__ import annotations

import os

from kombu import Queue

from config_core import settings as core

VISIBILITY_TIMEOUT_S = int(os.environ.get("APGCFG_VISIBILITY_TIMEOUT_S", "90"))
"""Redis transport visibility timeout: a task unacked this long (its worker died) runs again."""

MAX_COUNTDOWN_S = max(1, VISIBILITY_TIMEOUT_S // 2)
"""Longest wait held as a Celery countdown; longer waits are parked in Redis (see relay)."""

_redis_url = core.redis_url()

broker_url = os.environ.get("CELERY_BROKER_URL") or _redis_url
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or _redis_url

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_queues = [Queue("high"), Queue("medium"), Queue("low")]
task_default_queue = "medium"
task_routes = ("workers.routing.route_by_urgency",)

task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True
"""A task that raised is acknowledged: its ledger row says what became of the delivery, and a
row left pending or retrying past its time is published again by the relay's reconciler."""
task_acks_on_timeout = False
"""A task killed by its hard time limit is requeued; the ledger counted the attempt, and an
attempt that died while sending is never repeated blindly (see ``workers.delivery``)."""
task_ignore_result = True
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True
broker_pool_acquire_timeout = 10
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "queue_order_strategy": "priority",
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 1,
}
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
visibility_timeout = VISIBILITY_TIMEOUT_S
result_expires = 24 * 3600

worker_disable_rate_limits = os.environ.get("APGCFG_RATE_LIMITS", "1") == "0"
"""``APGCFG_RATE_LIMITS=0`` turns the delivery tasks' rate limits off (see
``workers.rate_limits``): for loopback fakes that do not limit, in tests and benchmarks."""

worker_send_task_events = os.environ.get("APGCFG_TASK_EVENTS", "1") != "0"
task_send_sent_event = worker_send_task_events
worker_hijack_root_logger = False

task_always_eager = core.eager()
task_eager_propagates = False

HEALTH_CHECK_INTERVAL_S = float(os.environ.get("APGCFG_HEALTH_CHECK_INTERVAL_S", "60"))
"""How often celery beat checks every connector's health (``connector-health-tick``)."""

FLOWER_TASKS_COLUMNS = "name,state,exception,received,runtime,worker,uuid"
"""Flower's task list columns (``--tasks-columns``): the exception column shows why a delivery
is retrying or dead (masked), next to its state."""

beat_schedule = {
    "connector-health-tick": {
        "task": "workers.connector_health_tick",
        "schedule": HEALTH_CHECK_INTERVAL_S,
        "options": {"expires": HEALTH_CHECK_INTERVAL_S},
    },
    "performance-events": {
        "task": "workers.flush_performance",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "identity-sync-tick": {
        "task": "workers.identity_tick",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}
