"""The Celery application, ``workers.app``."""

from __future__ import annotations

from celery import Celery

from workers.bootsteps import RelayStep

app = Celery("apgcfg", include=["workers.tasks"])
app.config_from_object("workers.settings")
app.steps["worker"].add(RelayStep)
