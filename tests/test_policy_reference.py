"""docs/policy-reference.md is generated from the policy schema and must match it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.policy import reference
from gatekeeper.policy.schema import PolicyDocument, json_schema

DOC = Path(__file__).resolve().parent.parent / "docs" / "policy-reference.md"


def _section(text: str, title: str) -> str:
    """The body of one `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title}"
    return match.group(1)


def test_committed_reference_is_current() -> None:
    """The committed reference is exactly what the schema renders: a schema change without a
    regenerated page fails here, with the command that fixes it."""
    assert DOC.read_text(encoding="utf-8") == reference.render(), (
        f"docs/policy-reference.md is stale; regenerate it with: {reference.COMMAND}")


def test_every_schema_property_is_documented_in_its_section() -> None:
    """Checked against the JSON Schema (an independent view of the same models): every object in it
    has a section, and every property of it a row there."""
    text = reference.render()
    schema = json_schema()
    objects = {schema.get("title", "PolicyDocument"): schema, **schema.get("$defs", {})}
    titles = {s.model.model_json_schema(by_alias=True).get("title"): reference._title(s.model)
              for s in reference.sections()}
    checked = 0
    for title, definition in objects.items():
        if "properties" not in definition:
            continue
        body = _section(text, titles[title])
        for prop in definition["properties"]:
            assert f"| `{prop}` |" in body, f"{prop} of {title} is missing from the reference"
            checked += 1
    assert checked >= 40


class _Colour(BaseModel):
    """A nested section."""

    model_config = ConfigDict(extra="forbid")
    shade: Literal["light", "dark"] = Field(default="dark", description="how dark")


class _Root(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(max_length=20)] = Field(description="what it is called")
    count: int = Field(default=3, ge=1, le=9)
    colours: list[_Colour] = Field(default_factory=list, max_length=4)
    by_name: dict[str, _Colour] = Field(default_factory=dict)


def test_the_generator_walks_any_model() -> None:
    """Nothing is hard-wired to today's sections: a model the generator never saw renders with every
    section, field, type, default, allowed value and description (so a new `tokens` section, or any
    other, documents itself)."""
    text = reference.render(_Root)
    assert [s.model for s in reference.sections(_Root)] == [_Root, _Colour]
    assert "`colours[]`, `by_name.NAME`" in text
    root = _section(text, "_Root")
    assert "| `name` | string | at most 20 characters | required | what it is called |" in root
    assert "| `count` | integer | 1 to 9 | `3` |" in root
    assert "| `colours` | list of [_Colour](#_colour) | at most 4 entries | empty | A nested section. |" in root
    colour = _section(text, "_Colour")
    assert "| `shade` | string | one of `light`, `dark` | `\"dark\"` | how dark |" in colour


def test_policy_sections_carry_their_allowed_values_and_defaults() -> None:
    """Spot checks on the real schema: enumerations, ranges, aliases and long defaults."""
    text = reference.render(PolicyDocument)
    approvals = _section(text, "Approvals")
    assert "one of `read`, `triage`, `write`, `maintain`, `admin`" in approvals
    assert "| `required` | integer | 0 to 10 | `1` |" in approvals
    assert "| `from` |" in approvals  # the YAML key, not the Python name `from_`
    top = _section(text, "PolicyDocument")
    assert "| `version` | integer | one of `1` | required |" in top
    assert '".github/workflows/**"' in top  # the long sensitive_paths default, listed under the table
