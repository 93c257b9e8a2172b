"""Multi-environment sync: the section's validation and the per-key decision (pure logic)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import redis

from config_core import ConfigError, ConfigService, NoApprovalRule
from config_core.sync import (
    Action,
    Baseline,
    Side,
    SyncSettings,
    decide,
    validate_multi_env_sync,
)
from tests.conftest import UNIT_DB, redis_url
from workers import env_sync

GUIDE: dict[str, Any] = {
    "environments": {
        "staging": {
            "endpoint": "https://staging-config.company.com",
            "api_key": "staging-key",
            "sync_patterns": ["app.*", "features.*"],
        },
        "production": {
            "endpoint": "https://prod-config.company.com",
            "api_key": "prod-key",
            "sync_patterns": ["app.*"],
            "approval_required": True,
        },
    },
    "sync_interval": 300,  # 5 minutes
    "conflict_resolution": "manual",
}


def changed(**fields: Any) -> dict[str, Any]:
    """The guide's section with ``fields`` replaced (``production__api_key`` reaches inside)."""
    value = copy.deepcopy(GUIDE)
    for name, item in fields.items():
        if "__" in name:
            env, setting = name.split("__")
            value["environments"][env][setting] = item
        else:
            value[name] = item
    return value


# the section -----------------------------------------------------------------------------


async def test_guide_section__set_config__stored_with_api_keys_masked(
        service: ConfigService) -> None:
    # Given the guide's snippet as pasted
    # When it is stored
    result = await service.set_config("integrations.multi_env_sync", GUIDE)
    # Then it is applied, shown masked, and kept as given for the workers
    assert result.status == "applied"
    shown = await service.get_config("integrations.multi_env_sync")
    assert shown["environments"]["production"]["api_key"] == "***"
    assert shown["environments"]["staging"]["api_key"] == "***"
    assert shown["environments"]["staging"]["sync_patterns"] == ["app.*", "features.*"]
    stored = await service.get_config("integrations.multi_env_sync", reveal=True)
    assert stored["environments"]["production"]["api_key"] == "prod-key"


async def test_guide_section__history_and_event__never_show_the_api_key(
        service: ConfigService) -> None:
    # Given the section stored with literal keys
    await service.set_config("integrations.multi_env_sync", GUIDE)
    # When its history is read
    text = repr(await service.history("integrations.multi_env_sync"))
    # Then neither key shows
    assert "prod-key" not in text and "staging-key" not in text


async def test_one_field__set_config__validated_like_the_section(service: ConfigService) -> None:
    # Given the section stored
    await service.set_config("integrations.multi_env_sync", GUIDE)
    # When one field is set to a bad value
    with pytest.raises(ConfigError, match="conflict_resolution"):
        await service.set_config("integrations.multi_env_sync.conflict_resolution", "newest")
    # Then a good one is taken
    await service.set_config("integrations.multi_env_sync.conflict_resolution", "source_wins")
    assert (await service.get_config("integrations.multi_env_sync"))["conflict_resolution"] \
        == "source_wins"


@pytest.mark.parametrize(("value", "named"), [
    ("not a dict", "integrations.multi_env_sync must be a dict"),
    (changed(environments={}), "integrations.multi_env_sync.environments"),
    (changed(sync_interval=0), "sync_interval"),
    (changed(sync_interval="300"), "sync_interval"),
    (changed(sync_interval=True), "sync_interval"),
    (changed(conflict_resolution="newest"), "conflict_resolution"),
    (changed(mode="push"), "unknown field"),
    (changed(production__endpoint=None), "environments.production.endpoint is required"),
    (changed(production__endpoint="ftp://prod"), "environments.production.endpoint"),
    (changed(production__endpoint="https://169.254.169.254"),
     "environments.production.endpoint points at 169.254.169.254"),
    (changed(production__api_key=""), "environments.production.api_key is required"),
    (changed(production__api_key="${env:lower case}"), "environments.production.api_key"),
    (changed(production__sync_patterns=[]), "environments.production.sync_patterns"),
    (changed(production__sync_patterns="app.*"), "environments.production.sync_patterns"),
    (changed(production__approval_required="yes"),
     "environments.production.approval_required"),
    (changed(production__apikey="typo"), "environments.production has unknown field"),
    ({"environments": {"prod.eu": GUIDE["environments"]["production"]}}, "'prod.eu'"),
])
def test_bad_section__validated__refused_naming_the_field(value: Any, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(".", r"\.")):
        validate_multi_env_sync(value)


def test_env_reference_api_key__validated__accepted() -> None:
    validate_multi_env_sync(changed(production__api_key="${env:PROD_CONFIG_API_KEY}"))


def test_settings__parsed_from_one_environment__its_own_entry_is_no_target() -> None:
    # Given the guide's section, seen from staging
    settings = SyncSettings.parse(GUIDE, "staging")
    # Then only production is a target, with its own patterns and approval flag
    assert list(settings.targets) == ["production"]
    target = settings.targets["production"]
    assert target.approval_required is True
    assert target.syncs("app.database.host") and not target.syncs("features.beta")
    assert settings.interval_s == 300 and settings.resolution == "manual"
    # And the API key never shows in its repr
    assert "prod-key" not in repr(target)


def test_target__integrations_keys__never_synced() -> None:
    target = SyncSettings.parse(changed(staging__sync_patterns=["*"]), "production") \
        .targets["staging"]
    assert target.syncs("app.x") and not target.syncs("integrations.discord")


# the decision ----------------------------------------------------------------------------

V1, V2 = '"one"', '"two"'


@pytest.mark.parametrize(("source", "target", "last", "resolution", "action"), [
    # never synced, absent there: push
    (Side(1, V1), Side(0), None, "manual", Action.PUSH),
    # never synced, the same value there: remember, send nothing
    (Side(1, V1), Side(4, V1), None, "manual", Action.RECORD),
    # never synced, another value there: both changed
    (Side(1, V1), Side(4, V2), None, "manual", Action.CONFLICT),
    # nothing changed since the last sync
    (Side(3, V1), Side(7, V1), Baseline(3, 7), "manual", Action.IN_SYNC),
    # only here
    (Side(4, V2), Side(7, V1), Baseline(3, 7), "manual", Action.PUSH),
    # only there: sync only pushes
    (Side(3, V1), Side(8, V2), Baseline(3, 7), "manual", Action.TARGET_AHEAD),
    # both, by resolution
    (Side(4, V2), Side(8, '"three"'), Baseline(3, 7), "manual", Action.CONFLICT),
    (Side(4, V2), Side(8, '"three"'), Baseline(3, 7), "source_wins", Action.PUSH),
    (Side(4, V2), Side(8, '"three"'), Baseline(3, 7), "target_wins", Action.KEEP_TARGET),
    # both, to the same value: no conflict
    (Side(4, V2), Side(8, V2), Baseline(3, 7), "manual", Action.RECORD),
    # both, but a value is masked (a secret): cannot tell, so a conflict
    (Side(4, None), Side(8, None), Baseline(3, 7), "manual", Action.CONFLICT),
    # the target refused this version: wait for the next change here
    (Side(4, V2), Side(7, V1), Baseline(3, 7, refused_version=4), "manual", Action.REFUSED),
    (Side(5, V2), Side(7, V1), Baseline(3, 7, refused_version=4), "manual", Action.PUSH),
])
def test_key_state__decided__action(source: Side, target: Side, last: Baseline | None,
                                    resolution: str, action: Action) -> None:
    assert decide(source, target, last, resolution) == action


def test_refused_version__retry_asked__pushed_again() -> None:
    last = Baseline(3, 7, refused_version=4)
    assert decide(Side(4, V2), Side(7, V1), last, "manual", retry_refused=True) == Action.PUSH


def test_baseline__stored_and_read__round_trips() -> None:
    last = Baseline(3, 7, {"request_id": "a" * 32, "source_version": 4}, 2, "409: no rule")
    assert Baseline.from_json(last.to_json()) == last
    assert Baseline.from_json(None) is None


# scheduling and the approval-only write ----------------------------------------------------


async def test_guide_section__seen_from_staging__production_due_once_per_interval(
        redis_server: str, tenant: str, raw_redis: redis.Redis) -> None:
    # Given the guide's section stored in staging
    staging = ConfigService(redis_url=redis_url(UNIT_DB), environment="staging", tenant=tenant)
    await staging.set_config_local_only("integrations.multi_env_sync", GUIDE)
    # When the relay's sweep asks twice within sync_interval
    first = env_sync.due_targets(raw_redis, staging.namespace)
    second = env_sync.due_targets(raw_redis, staging.namespace)
    await staging.close()
    # Then production's run is published once, and staging (itself) never
    assert (first, second) == (["production"], [])
    assert 0 < raw_redis.ttl(staging.namespace.key("sync", "due", "production")) <= 300


async def test_no_section__sweep_asks__nothing_due(service: ConfigService,
                                                   raw_redis: redis.Redis) -> None:
    await service.set_config("app.x", 1)
    assert env_sync.due_targets(raw_redis, service.namespace) == []


async def test_require_approval__no_rule_covers_key__refused_and_nothing_written(
        service: ConfigService) -> None:
    # Given approval rules for *.database.* only
    await service.set_config("integrations.approvals", {"required_approvals": {
        "*.database.*": {"approvers": ["dba@company.com"], "min_approvals": 1,
                         "timeout": 60}}})
    # When a write that must be approved targets another key
    with pytest.raises(NoApprovalRule, match=r"app\.flag"):
        await service.set_config("app.flag", True, require_approval=True)
    # Then nothing was written; and a covered key becomes a change request
    assert await service.get_config("app.flag", None) is None
    result = await service.set_config("app.database.host", "db2", require_approval=True)
    assert result.status == "pending_approval" and result.request_id
