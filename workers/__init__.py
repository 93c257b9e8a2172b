"""Celery workers: ``celery -A workers worker -Q high,medium,low`` runs the relay and deliveries."""

from workers.celery_app import app

__all__ = ["app"]
