"""The policy reference (docs/policy-reference.md), rendered from the pydantic models of `schema.py`.

    python -m gatekeeper.policy.reference > docs/policy-reference.md

Nothing here names a section or a field: the models are walked from `PolicyDocument`, so a section
added to the schema appears in the reference with its fields, types, defaults, allowed values and
descriptions, and tests/test_policy_reference.py fails until the committed page is regenerated.
"""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gatekeeper.policy.presets import PRESET_NAMES
from gatekeeper.policy.schema import PolicyDocument

COMMAND = "python -m gatekeeper.policy.reference > docs/policy-reference.md"

# Validators that give a plain string a meaning a reader needs (the type the schema cannot say).
# Keyed by the function's name so that a validator added later only costs a line here, and an
# unknown one still renders as its base type.
_VALIDATED_AS = {"_glob": "glob", "_pattern": "regex"}
_VALIDATOR_NOTES = {"_preset_exists": lambda: "presets: " + ", ".join(f"`preset:{n}`" for n in PRESET_NAMES)}

_SCALARS = {str: "string", int: "integer", bool: "boolean", float: "number", type(None): "null"}
_LONG_DEFAULT = 60  # characters: a longer default is listed under the table instead of in it


@dataclass
class TypeText:
    """How one annotation reads: its type, what values it allows, the models it refers to."""

    text: str
    allowed: list[str] = field(default_factory=list)
    models: list[tuple[type[BaseModel], str]] = field(default_factory=list)  # (model, path suffix)


@dataclass
class Section:
    model: type[BaseModel]
    paths: list[str]


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """An annotation without its `Annotated` layers, and their metadata (outermost first)."""
    metadata: list[Any] = []
    while get_origin(tp) is Annotated:
        metadata.extend(tp.__metadata__)
        tp = get_args(tp)[0]
    flat: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Field(...) inside Annotated: its constraints are its metadata
            flat.extend(item.metadata)
        elif isinstance(item, annotated_types.GroupedMetadata):  # StringConstraints: min, max, pattern
            flat.extend(item)
        else:
            flat.append(item)
    return tp, flat


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`" if not isinstance(value, str) else f"`{value}`"


def _constraints(metadata: list[Any], kind: str) -> list[str]:
    """Constraints in words; `kind` says what a length counts (entries, characters)."""
    out: list[str] = []
    lo = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    hi = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    if lo is not None and hi is not None:
        out.append(f"{lo} to {hi}")
    elif lo is not None:
        out.append(f"at least {lo}")
    elif hi is not None:
        out.append(f"at most {hi}")
    for m in metadata:
        if isinstance(m, annotated_types.Gt):
            out.append(f"more than {m.gt}")
        elif isinstance(m, annotated_types.Lt):
            out.append(f"less than {m.lt}")
    shortest = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), None)
    longest = next((m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)), None)
    if shortest:
        out.append(f"at least {_count(shortest, kind)}")
    if longest is not None:
        out.append(f"at most {_count(longest, kind)}")
    for m in metadata:
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            out.append(f"matches `{pattern}`")
        func = getattr(m, "func", None)
        note = _VALIDATOR_NOTES.get(getattr(func, "__name__", ""))
        if isinstance(m, AfterValidator) and note is not None:
            out.append(note())
    return out


def _count(n: int, kind: str) -> str:
    return f"{n} {kind if n != 1 else kind.removesuffix('s').replace('entrie', 'entry')}"


def _validated_name(metadata: list[Any]) -> str | None:
    for m in metadata:
        if isinstance(m, AfterValidator):
            name = _VALIDATED_AS.get(getattr(m.func, "__name__", ""))
            if name:
                return name
    return None


def _accepts_one(metadata: list[Any]) -> bool:
    """A `BeforeValidator` whose input type also takes a single value where a list is stored."""
    for m in metadata:
        if isinstance(m, BeforeValidator) and m.json_schema_input_type is not PydanticUndefined:
            members = get_args(m.json_schema_input_type) if _is_union(m.json_schema_input_type) else (
                m.json_schema_input_type,)
            if any(get_origin(x) is not list for x in members):
                return True
    return False


def describe(tp: Any, outer: list[Any] | None = None) -> TypeText:
    """Render one annotation; `outer` is metadata given on the field itself (Field(...) constraints)."""
    core, metadata = _unwrap(tp)
    metadata = [*(outer or []), *metadata]
    before = next((m for m in metadata if isinstance(m, BeforeValidator)
                   and m.json_schema_input_type is not PydanticUndefined), None)

    if _is_union(core):
        args = [a for a in get_args(core) if a is not type(None)]
        nullable = len(args) < len(get_args(core))
        if len(args) == 1:  # `X | None`: the field's constraints are X's
            result = describe(args[0], metadata)
        else:
            parts = [describe(arg) for arg in args]
            result = TypeText(" or ".join(p.text for p in parts))
            for p in parts:
                result.models.extend(p.models)
                result.allowed.extend(p.allowed)
            result.allowed.extend(_constraints(metadata, "entries"))
        if nullable:
            result.text += ", or null" if " or " in result.text else " or null"
        return result
    if get_origin(core) is Literal:
        values = get_args(core)
        return TypeText(_SCALARS.get(type(values[0]), "value"),
                        ["one of " + ", ".join(_code(v) for v in values)])
    if get_origin(core) is list:
        item = describe(get_args(core)[0])
        text = f"list of {item.text}"
        if _accepts_one(metadata):
            text = f"{item.text} or list of {item.text}"
        result = TypeText(text, models=[(m, "[]" + s) for m, s in item.models])
        result.allowed.extend(_constraints(metadata, "entries"))
        if item.allowed:
            result.allowed.append("each: " + ", ".join(item.allowed))
        return result
    if get_origin(core) is dict:
        key_t, value_t = (describe(a) for a in get_args(core))
        result = TypeText(f"mapping of {key_t.text} to {value_t.text}",
                          models=[(m, ".NAME" + s) for m, s in value_t.models])
        result.allowed.extend(_constraints(metadata, "entries"))
        if key_t.allowed:
            result.allowed.append("keys: " + ", ".join(key_t.allowed))
        if value_t.allowed:
            result.allowed.append("values: " + ", ".join(value_t.allowed))
        return result
    if isinstance(core, type) and issubclass(core, BaseModel):
        text = f"[{_title(core)}](#{_slug(_title(core))})"
        if before is not None and _accepts_one([before]):
            text = f"string (its message) or {text}"
        return TypeText(text, models=[(core, "")])
    if isinstance(core, type) and core in _SCALARS:
        name = _validated_name(metadata) or _SCALARS[core]
        if before is not None:
            # The value is read through a converter: say what may be written, not what is stored.
            written = describe(before.json_schema_input_type)
            name = written.text if written.text != name else name
        kind = "characters" if core is str else "entries"
        return TypeText(name, _constraints(metadata, kind))
    return TypeText(getattr(core, "__name__", str(core)))


def _title(model: type[BaseModel]) -> str:
    return model.__name__


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def _key(name: str, info: FieldInfo) -> str:
    return info.alias or name


def sections(root: type[BaseModel] = PolicyDocument) -> list[Section]:
    """Every model reachable from `root`, in the order a reader meets them, with every path to it."""
    found: dict[type[BaseModel], Section] = {}

    def visit(model: type[BaseModel], path: str) -> None:
        if model in found:
            found[model].paths.append(path)
            return
        found[model] = Section(model, [path])
        for name, info in model.model_fields.items():
            for child, suffix in describe(info.annotation, list(info.metadata)).models:
                key = _key(name, info)
                visit(child, f"{path}.{key}{suffix}" if path else f"{key}{suffix}")

    visit(root, "")
    return list(found.values())


def _default(info: FieldInfo) -> tuple[str, str | None]:
    """(the table cell, a long default to list under the table)."""
    if info.is_required():
        return "required", None
    if info.default_factory is not None:
        if getattr(info, "default_factory_takes_data", False):
            return "computed", None
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "each field's default", None
    if value is None:
        return "not set", None
    if value == [] or value == {}:
        return "empty", None
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > _LONG_DEFAULT:
        return "below", text
    return f"`{text}`", None


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _doc(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if doc.startswith(f"{model.__name__}(") or "Usage docs:" in doc:
        return ""  # pydantic's own docstring, inherited: the model has none
    return " ".join(line.strip() for line in doc.strip().splitlines())


def _model_doc(shown: TypeText) -> str:
    """A field that is only a section (or a list of it) is described by the section's docstring."""
    bare = shown.text.removesuffix(", or null").removesuffix(" or null").removeprefix("list of ")
    if len(shown.models) == 1 and bare.startswith("[") and " or " not in bare:
        return _doc(shown.models[0][0])
    return ""


def render(root: type[BaseModel] = PolicyDocument) -> str:
    found = sections(root)
    out = [
        "# Policy reference (`.agentgate.yml`)",
        "",
        f"Generated from the schema (`gatekeeper/policy/schema.py`) by `{COMMAND}`; do not edit by hand.",
        "How the rules combine, presets and examples: [policy.md](policy.md). The JSON Schema for editors:",
        "`rules/schema.json`.",
        "",
        "Types: a *glob* is a path or name pattern (`*` within one path segment, `**` across any number,",
        "`?`, `[abc]`, `{a,b}`; see policy.md); a *regex* is a regular expression, searched",
        "case-insensitively. A field whose default is *each field's default* takes the defaults of its",
        "section; *not set* means the field is absent (`null`). Sections:",
        "",
    ]
    for entry in found:
        listed = ", ".join(f"`{p}`" for p in entry.paths if p) or "the file itself"
        out.append(f"- [{_title(entry.model)}](#{_slug(_title(entry.model))}): {listed}")
    for section in found:
        out += ["", f"## {_title(section.model)}", ""]
        where = [p for p in section.paths if p]
        out.append(("At " + ", ".join(f"`{p}`" for p in where) + ".") if where else "The top level of the file.")
        doc = _doc(section.model)
        if doc:
            out += ["", doc]
        out += ["", "| field | type | allowed values | default | description |",
                "|---|---|---|---|---|"]
        long_defaults: list[tuple[str, str]] = []
        for name, info in section.model.model_fields.items():
            key = _key(name, info)
            shown = describe(info.annotation, list(info.metadata))
            default, long = _default(info)
            if long is not None:
                long_defaults.append((key, long))
                default = f"[below](#{_slug(_title(section.model))}-{_slug(key)}-default)"
            allowed = "; ".join(shown.allowed) or "any"
            description = info.description or _model_doc(shown)
            out.append(f"| `{key}` | {_cell(shown.text)} | {_cell(allowed)} | {_cell(default)} "
                       f"| {_cell(description)} |")
        for key, value in long_defaults:
            out += ["", f"<a id=\"{_slug(_title(section.model))}-{_slug(key)}-default\"></a>"
                    f"Default of `{key}`:", "", "```json", value, "```"]
    return "\n".join(out) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
