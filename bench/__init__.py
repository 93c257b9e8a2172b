"""Benchmarks of the write path and of end-to-end delivery latency.

``python -m bench.run`` (``make bench``) measures, side by side in one run: ``settings``
(defaults), ``facts`` (machine facts), ``writes`` with ``baselines`` (set_config throughput next
to a bare Celery publish and a raw Redis transaction), ``latency`` with ``worker`` and ``probe``
(set_config to webhook through a real worker and a loopback Discord), ``report`` (tables, JSON).
``python -m bench.diagnose`` splits one set_config's time into its parts.
"""
