"""Celery workers: ``celery -A workers worker -Q high,medium,low`` runs the relay and deliveries.

Importing the package registers everything a process needs: the tasks, the worker bootstep
that runs the outbox relay, and the inline dispatcher ``config_core`` uses in eager mode.
"""

from config_core import hooks
from workers import tasks
from workers.bootsteps import RateLimitStep, RelayStep
from workers.celery_app import app
from workers.relay import drain_inline

app.steps["worker"].add(RelayStep)
app.steps["worker"].add(RateLimitStep)
hooks.register_inline_dispatch(drain_inline)

__all__ = ["app", "tasks"]
