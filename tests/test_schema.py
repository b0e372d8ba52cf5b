"""The committed JSON Schema is the one the model generates."""

from __future__ import annotations

import json
from pathlib import Path

from gatekeeper.policy.schema import json_schema, json_schema_text

SCHEMA = Path(__file__).parent.parent / "rules" / "schema.json"


def test_committed_schema_matches_the_model():
    """rules/schema.json is generated from gatekeeper.policy.schema; regenerate it after changing the model:
    python -c "from gatekeeper.policy.schema import json_schema_text as t; print(t(), end='')" > rules/schema.json"""
    assert SCHEMA.read_text() == json_schema_text()


def test_schema_describes_version_one_and_forbids_unknown_keys():
    """Editors learn that `version: 1` is required and that unknown keys are errors."""
    schema = json_schema()
    assert schema["required"] == ["version"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["version"]["const"] == 1
    assert json.loads(SCHEMA.read_text())["$defs"]["Rule"]["additionalProperties"] is False
