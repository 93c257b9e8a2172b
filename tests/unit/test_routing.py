"""Routing is a pure function: key, triggers and configured connectors in, urgencies out."""

from __future__ import annotations

import pytest

from config_core.errors import ConfigError
from config_core.routing import matches, route, route_event, validate_notifications

GUIDE_TRIGGERS = {
    "critical_changes": {"patterns": ["*.database.*", "*.security.*", "*.payment.*"],
                         "connectors": ["discord", "zendesk", "newrelic"], "urgency": "high"},
    "feature_flags": {"patterns": ["features.*"], "connectors": ["slack", "github"],
                      "urgency": "medium"},
    "routine_changes": {"patterns": ["app.logging.*", "app.cache.*"], "connectors": ["splunk"],
                        "urgency": "low"},
}


@pytest.mark.parametrize(("key", "pattern", "expected"), [
    ("app.database.host", "*.database.*", True),
    ("a.b.database.c.d", "*.database.*", True),   # '*' spans dots
    ("app.Database.host", "*.database.*", False),  # case-sensitive
    ("database.host", "*.database.*", False),
    ("features.dark_mode", "features.*", True),
])
def test_matches__glob__star_spans_dots(key: str, pattern: str, expected: bool) -> None:
    assert matches(key, pattern) is expected


def test_route__no_triggers__every_configured_connector_on_medium() -> None:
    # Given no triggers / When routing / Then each configured connector gets medium
    assert route("app.x", {}, ["slack", "discord"]) == {"discord": "medium", "slack": "medium"}


def test_route__guide_triggers__matching_connectors_at_trigger_urgency() -> None:
    configured = ["discord", "slack", "splunk"]
    assert route("app.database.host", GUIDE_TRIGGERS, configured) == {"discord": "high"}
    assert route("features.dark_mode", GUIDE_TRIGGERS, configured) == {"slack": "medium"}
    assert route("app.cache.ttl", GUIDE_TRIGGERS, configured) == {"splunk": "low"}
    assert route("app.unrelated", GUIDE_TRIGGERS, configured) == {}


def test_route__connector_in_two_triggers__gets_most_urgent_queue() -> None:
    # Given slack in a low and a high trigger that both match
    triggers = {"a": {"patterns": ["app.*"], "connectors": ["slack"], "urgency": "low"},
                "b": {"patterns": ["*.database.*"], "connectors": ["slack"], "urgency": "high"}}
    # When / Then
    assert route("app.database.port", triggers, ["slack"]) == {"slack": "high"}


def test_route__named_but_unconfigured_connector__left_out() -> None:
    assert route("app.database.host", GUIDE_TRIGGERS, ["slack"]) == {}


@pytest.mark.parametrize(("value", "message"), [
    ([], "must be a dict"),
    ({"triggers": {"x": {"patterns": "app.*", "connectors": ["slack"]}}}, "x.patterns"),
    ({"triggers": {"x": {"patterns": ["a"], "connectors": ["slack"], "urgency": "urgent"}}},
     "x.urgency"),
    ({"triggers": {"x": {"patterns": ["a"], "connectors": ["slack"], "extra": 1}}}, "unknown"),
    ({"trigger": {}}, "unknown field"),
])
def test_validate_notifications__malformed__names_the_field(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_notifications(value)


def approval_event(event_type: str, methods: list[str]) -> dict[str, object]:
    return {"type": event_type, "key": "app.database.host",
            "metadata": {"request_id": "r1", "methods": methods}}


@pytest.mark.parametrize("event_type", ["approval.requested", "approval.decided"])
def test_route_event__approval_methods__each_configured_method_added(event_type: str) -> None:
    # Given triggers that send database keys to discord only, and the guide's methods
    triggers = {"critical": {"patterns": ["*.database.*"], "connectors": ["discord"],
                             "urgency": "high"}}
    event = approval_event(event_type, ["email", "slack", "jira"])
    # When an approval event is routed with discord, slack and email configured
    routes = route_event(event, triggers, {"discord", "slack", "email"})
    # Then the trigger's connector keeps its queue, and the configured methods are added
    assert routes == {"discord": "high", "slack": "medium", "email": "medium"}


def test_route_event__method_also_in_a_trigger__keeps_the_trigger_urgency() -> None:
    triggers = {"critical": {"patterns": ["*.database.*"], "connectors": ["slack"],
                             "urgency": "high"}}
    routes = route_event(approval_event("approval.requested", ["slack"]), triggers, {"slack"})
    assert routes == {"slack": "high"}


def test_route_event__other_event_types__methods_in_metadata_ignored() -> None:
    triggers = {"critical": {"patterns": ["*.security.*"], "connectors": ["slack"]}}
    event = {**approval_event("config.changed", ["slack"])}
    assert route_event(event, triggers, {"slack"}) == {}
