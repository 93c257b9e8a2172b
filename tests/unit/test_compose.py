"""compose.yaml: the services a deployment needs, the queues each worker takes, its variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.settings import FLOWER_TASKS_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
VARIABLE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def celery_command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert command[:3] == ["celery", "-A", "workers"], command
    return command


def test_compose__services__redis_two_workers_beat_flower_api_metrics(
        compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "worker-high", "worker-low", "beat", "flower",
                                        "api", "metrics"}
    assert celery_command(compose["services"]["beat"])[3] == "beat"
    assert celery_command(compose["services"]["flower"])[3] == "flower"
    assert compose["services"]["api"]["command"][:2] == ["apgcfg", "serve"]
    assert compose["services"]["metrics"]["command"][:2] == ["apgcfg", "metrics"]


def test_compose__workers__high_alone_and_medium_low__distinct_node_names(
        compose: dict[str, Any]) -> None:
    high = celery_command(compose["services"]["worker-high"])
    low = celery_command(compose["services"]["worker-low"])
    assert high[3] == low[3] == "worker"
    assert option(high, "-Q").split(",") == ["high"]
    assert option(low, "-Q").split(",") == ["medium", "low"]
    assert option(high, "-n") != option(low, "-n")
    # and each runs the relay for its own urgencies, with the shared settings kept
    for name, urgencies in (("worker-high", "high"), ("worker-low", "medium,low")):
        env = compose["services"][name]["environment"]
        assert env["APGCFG_RELAY_URGENCIES"] == urgencies
        assert env["CONFIG_REDIS_URL"] == "redis://redis:6379/0"


def test_compose__redis__durable_and_every_app_service_waits_for_it(
        compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and "healthcheck" in redis
    for name, service in compose["services"].items():
        if name != "redis":
            assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
            assert service["environment"]["CONFIG_REDIS_URL"] == "redis://redis:6379/0", name


def test_compose__flower_api_metrics__published_on_loopback_flower_metrics_need_auth(
        compose: dict[str, Any]) -> None:
    for name in ("flower", "api", "metrics"):
        for port in compose["services"][name]["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)
    assert ":?" in compose["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert ":?" in compose["services"]["metrics"]["environment"]["APGCFG_METRICS_TOKEN"]


def test_compose__flower__task_list_shows_the_exception_column(compose: dict[str, Any]) -> None:
    command = celery_command(compose["services"]["flower"])
    assert f"--tasks-columns={FLOWER_TASKS_COLUMNS}" in command
    assert "exception" in FLOWER_TASKS_COLUMNS.split(",")


def test_compose__every_variable_used__listed_in_env_example() -> None:
    # Given the variables compose.yaml interpolates and those .env.example sets
    used = set(VARIABLE_RE.findall((ROOT / "compose.yaml").read_text()))
    listed = {line.split("=", 1)[0].strip()
              for line in (ROOT / ".env.example").read_text().splitlines()
              if "=" in line and not line.lstrip().startswith("#")}
    # Then every used one is listed (and the check sees some)
    assert {"FLOWER_BASIC_AUTH", "CONFIG_ENVIRONMENT", "CONFIG_TENANT"} <= used
    assert used - listed == set()


def test_dockerfile__installs_the_package__ignores_local_state() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile and "USER " in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".env", ".git"} <= set(ignored)
