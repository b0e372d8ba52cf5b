"""Safe, bounded YAML that remembers where every value came from.

A policy file is untrusted input (anyone with write access to the base branch wrote it, and a PR may
propose a new one), so loading is bounded: a size limit, a nesting limit, an alias limit and a limit
on the expanded number of values (billion laughs), only the plain YAML types, no duplicate keys, no
merge keys. Every value's position is recorded by its path (a tuple of keys and indices), so schema
errors found later can point at a line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 64 * 1024
MAX_DEPTH = 24
MAX_ALIASES = 64
MAX_VALUES = 20000

Path = tuple[str | int, ...]
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str")}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass(frozen=True)
class YamlError(Exception):
    """A problem at a 1-based line and column."""

    line: int
    col: int
    message: str


@dataclass
class Located:
    """The plain data of a document, and where each value (and each mapping key) starts."""

    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The position of the longest prefix of `path` that exists: a missing key points at its parent."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and end == len(path) and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:  # type: ignore[override]
        event = self.peek_event()
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlError(*_pos(event.start_mark), f"more than {MAX_ALIASES} aliases")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlError(*_pos(event.start_mark), f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def load_located(text: str) -> Located:
    """Parse one YAML document into plain data with positions; raises YamlError."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise YamlError(1, 1, f"the file is {size} bytes; the limit is {MAX_BYTES}")
    try:
        # The reader rejects unprintable characters (NUL, lone surrogates...) as soon as it is built.
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise YamlError(line, col, f"unacceptable character {chr(exc.character)!r} (#x{exc.character:04x}): "
                                   "YAML allows only printable characters") from exc
    try:
        root = loader.get_single_node()
        located = Located(None)
        if root is not None:
            located.data = _Builder(loader, located).build(root, ())
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.problem_mark is not None:
            problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
        raise YamlError(*_pos(mark), problem) from exc
    except yaml.YAMLError as exc:
        raise YamlError(1, 1, f"invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise YamlError(1, 1, "the document is nested too deeply") from exc
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, loader: _BoundedLoader, located: Located) -> None:
        self.loader = loader
        self.located = located
        self.count = 0

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:  # aliases can multiply a small file into a huge one
            raise YamlError(*_pos(node.start_mark), f"the document expands to more than {MAX_VALUES} values")
        self.located.values.setdefault(path, _pos(node.start_mark))
        if isinstance(node, ScalarNode):
            if node.tag not in _PLAIN_TAGS:
                raise YamlError(*_pos(node.start_mark), f"unsupported tag {node.tag!r}")
            try:
                return self.loader.construct_object(node, deep=True)
            except ValueError as exc:  # an integer of more digits than Python converts (4300)
                raise YamlError(*_pos(node.start_mark), f"{node.value[:20]!r}... is too long a number") from exc
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                raise YamlError(*_pos(node.start_mark), f"unsupported tag {node.tag!r}")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP_TAG:
                raise YamlError(*_pos(node.start_mark), f"unsupported tag {node.tag!r}")
            out: dict[str, Any] = {}
            first_seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlError(*_pos(key_node.start_mark),
                                    "merge keys (<<) are not supported; write the values out")
                if not isinstance(key_node, ScalarNode):
                    raise YamlError(*_pos(key_node.start_mark), "keys must be plain strings")
                if key_node.tag != "tag:yaml.org,2002:str":
                    raise YamlError(*_pos(key_node.start_mark),
                                    f"keys must be strings: quote {key_node.value!r} (YAML reads it as a "
                                    f"{key_node.tag.rsplit(':', 1)[-1]})")
                key = str(key_node.value)
                if key in first_seen:
                    raise YamlError(*_pos(key_node.start_mark),
                                    f"duplicate key {key!r} (first at line {first_seen[key]})")
                first_seen[key] = key_node.start_mark.line + 1
                self.located.keys[(*path, key)] = _pos(key_node.start_mark)
                out[key] = self.build(value_node, (*path, key))
            return out
        raise YamlError(*_pos(node.start_mark), "unsupported YAML node")
