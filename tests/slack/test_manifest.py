"""manifest.yml against Slack's published app manifest schema 1.0.0 (slackapi/manifest-schema,
MIT licence; a copy lives in tests/data), offline."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "data" / "slack-manifest.schema.1.0.0.json"
SCOPES = {"commands", "chat:write", "users:read", "users:read.email", "im:write", "files:write"}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_manifest_validates_against_the_schema(manifest, validator):
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_manifest(manifest, validator):
    broken = copy.deepcopy(manifest)
    broken["features"]["slash_commands"][0]["command"] = "cadence"  # must start with "/"
    broken["settings"]["interactivity"].pop("is_enabled")
    broken["display_information"]["colour"] = "#fff"  # not a field
    paths = {tuple(e.path) for e in validator.iter_errors(broken)}
    assert ("features", "slash_commands", 0, "command") in paths
    assert ("settings", "interactivity") in paths
    assert ("display_information",) in paths


def test_the_manifest_asks_for_what_the_bot_uses_and_no_more(manifest):
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES
    assert "user" not in manifest["oauth_config"]["scopes"]
    features, settings = manifest["features"], manifest["settings"]
    assert features["bot_user"]["display_name"]
    assert features["app_home"]["home_tab_enabled"] and features["app_home"]["messages_tab_enabled"]
    assert [c["command"] for c in features["slash_commands"]] == ["/cadence"]
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    urls = {features["slash_commands"][0]["url"], settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"]}
    assert urls == {"https://cadence.example.com/slack/events"}


def test_the_docs_explain_every_scope_and_the_placeholder_host(manifest):
    docs = (ROOT / "docs" / "slack.md").read_text(encoding="utf-8")
    for scope in manifest["oauth_config"]["scopes"]["bot"]:
        assert f"`{scope}`" in docs, f"docs/slack.md does not explain {scope}"
    assert "cadence.example.com" in docs
