"""Benchmarks of the write path and of end-to-end delivery latency (``python -m bench.run``).

Modules: ``settings`` (defaults), ``facts`` (machine facts), ``writes`` (set_config throughput
against a bare Celery publish and a raw Redis transaction), ``worker`` (a real worker
subprocess), ``latency`` (set_config to webhook, one change at a time), ``report`` (tables and
JSON) and ``run`` (the command line).
"""
