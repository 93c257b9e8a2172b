"""The Redis state, one module per structure; each owns its keys and its scripts.

- ``keys``: namespaces (``apgcfg:{tenant}:{environment}:``) and the keys shared by all of them.
- ``values``: values, versions, history, notes, and the script that applies a change.
- ``events``: the outbox stream and the dispatched event documents.
- ``ledger``: one row per (event, connector) delivery, the dead list and the due index.
- ``dedupe``: what connectors created for an event, and the newest version they acted on.
- ``buffers``: batched deliveries waiting to be flushed, and claimed batches.
- ``parking``: tasks waiting longer than a Celery countdown may.
- ``breakers``: connectors whose vendor keeps failing, left alone for a cooldown.
- ``health``: each connector's health record (failure streak, pause, last status) and the
  line its deliveries wait in while it is paused.
- ``relays``: each relay's last report (liveness, backlog).
- ``counters``: delivery outcomes and latency, counted by the ledger's finish script.
- ``metrics``: those counters, the outbox backlog and the dead letters, read for ``/metrics``.
- ``samples``: performance samples waiting for New Relic.
- ``directory``: identity providers' users and the roles they give.
- ``apikeys``: the HTTP API's keys (hashes only).

Synchronous code (workers) passes a ``redis.Redis``; the service's async ``Store`` builds its
commands from the same key functions.
"""
