"""The Celery application, ``workers.app`` (its tasks are in ``workers.tasks``)."""

from __future__ import annotations

from celery import Celery

app = Celery("apgcfg", include=["workers.tasks"])
app.config_from_object("workers.settings")
