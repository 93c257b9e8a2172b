"""What machine and versions the numbers come from."""

from __future__ import annotations

import os
import platform
from typing import Any

import celery
import kombu
import redis


def machine_facts(url: str) -> dict[str, Any]:
    """CPU count, load, Python, library and Redis server versions."""
    client = redis.Redis.from_url(url)
    try:
        server = client.info("server")
    finally:
        client.close()
    load_1m, load_5m, _ = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "load_avg_1m_5m": f"{load_1m:.2f} / {load_5m:.2f}",
        "platform": platform.platform(terse=True),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "redis_server": server.get("redis_version", "?"),
        "redis_url": url,
    }
