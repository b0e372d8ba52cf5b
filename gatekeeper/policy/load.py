"""Turn the text of `.agentgate.yml` into a policy, or into the errors that make it invalid.

Pure: files named by `extends: org:REPO` must be fetched by the caller (see `org_refs`) and handed in
as `extends={"org:.github": text_or_None}`; presets are read from package data.

Precedence, lowest first: the built-in secure default; each `extends` entry in the order listed (a
preset may extend presets, an org file may extend presets); the file itself. Each file is applied once.
- mappings merge key by key; scalars and lists replace what they inherit;
- a glob, pattern or label list may instead be written `{add: [...], remove: [...]}` to edit the
  inherited list (removing an entry that is not inherited is an error);
- `rules`, `identities.agents`, `identities.bots`, `identities.trusted_bots` and `chains.allow`
  accumulate: a file cannot drop a rule it inherits.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from gatekeeper.core.grants import AgentMatch, TokenRule
from gatekeeper.policy import model, schema
from gatekeeper.policy.globs import GlobSet, alternatives
from gatekeeper.policy.model import DEFAULT_POLICY, ConfigError, InvalidPolicy, Policy
from gatekeeper.policy.patterns import Pattern
from gatekeeper.policy.presets import preset_text
from gatekeeper.policy.yaml_loader import Located, Path, YamlError, load_located

POLICY_PATH = ".agentgate.yml"

_CONCAT: set[Path] = {("rules",), ("identities", "agents"), ("identities", "bots"),
                      ("identities", "trusted_bots"), ("chains", "allow")}
_EDITABLE: set[Path] = {("protected_branches",), ("sensitive_paths",), ("chains", "commands"),
                        ("chains", "trigger_labels"), ("chains", "protected_environments")}
_UNION_TAGS = {"list", "edit"}
_YAML_NAMES = {"from_": "from"}


def load_policy(text: str | None, *, source: str = POLICY_PATH,
                extends: Mapping[str, str | None] | None = None) -> Policy | InvalidPolicy:
    """No file means the secure default; a file is never ignored, even one we cannot read.

    `extends` maps each `org:REPO` reference the file names (see `org_refs`) to that file's text, or
    to None when the organisation has no such file. A reference missing from the mapping is an error:
    a policy is never evaluated without a part of itself.
    """
    if text is None:
        return DEFAULT_POLICY
    return _load(text, source, tuple(sorted((extends or {}).items())), False)


def check_policy(text: str, *, source: str = POLICY_PATH) -> list[ConfigError]:
    """Validate one file on its own: `org:` references are not fetched, so they are skipped."""
    result = _load(text, source, (), True)
    return list(result.errors) if isinstance(result, InvalidPolicy) else []


def org_refs(text: str | None) -> tuple[str, ...]:
    """The `org:REPO` files a policy text extends, which the worker fetches before `load_policy`.
    Best effort: a text that does not parse names none (loading it reports the error). At most
    `schema.MAX_EXTENDS` of them: a file naming more is invalid anyway, and each is a platform read."""
    if text is None:
        return ()
    try:
        data = load_located(text).data
    except YamlError:
        return ()
    refs = data.get("extends") if isinstance(data, dict) else None
    refs = [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []
    found = dict.fromkeys(r for r in refs[:schema.MAX_EXTENDS] if isinstance(r, str) and r.startswith("org:"))
    return tuple(found)


@lru_cache(maxsize=256)
def _load(text: str, source: str, fetched: tuple[tuple[str, str | None], ...],
          skip_missing_org: bool) -> Policy | InvalidPolicy:
    builder = _Builder(dict(fetched), skip_missing_org)
    builder.apply(text, source, source, ())
    if builder.errors:
        return InvalidPolicy(tuple(builder.errors), source=source)
    try:
        document = schema.PolicyDocument.model_validate(builder.acc)
    except ValidationError as exc:  # every layer was valid alone; their combination is not
        errors = tuple(ConfigError(source, 1, 1, f"after applying extends: {_display(e['loc'])}: {e['msg']}")
                       for e in exc.errors(include_url=False))
        return InvalidPolicy(errors, source=source)
    return compile_document(document, source=source, origins=tuple(builder.rule_origins),
                            layers=tuple(builder.applied))


@dataclass
class _Builder:
    fetched: dict[str, str | None]
    skip_missing_org: bool
    acc: dict[str, Any] = field(default_factory=lambda: schema.PolicyDocument(version=1).model_dump())
    errors: list[ConfigError] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # lowest precedence first
    seen: set[str] = field(default_factory=set)
    rule_origins: list[str] = field(default_factory=list)

    def apply(self, text: str, source: str, name: str, stack: tuple[str, ...]) -> None:
        read = _read(text, source)
        if isinstance(read, list):
            self.errors.extend(read)
            return
        document, located = read
        self.seen.add(name)
        for i, ref in enumerate(document.extends):
            line, col = located.position(("extends", i) if isinstance(located.data.get("extends"), list)
                                         else ("extends",))
            if ref in stack or ref == name:
                self.errors.append(ConfigError(source, line, col, f"extends {ref}, which extends this file"))
                continue
            if ref in self.seen:
                continue
            if ref.startswith("preset:"):
                preset = ref.removeprefix("preset:")
                self.apply(preset_text(preset) or "", f"preset:{preset}", ref, (*stack, name))
                continue
            if name.startswith(("preset:", "org:")):
                self.errors.append(ConfigError(source, line, col,
                                               "only a repository's own policy may extend org: files"))
                continue
            if ref not in self.fetched:
                if not self.skip_missing_org:
                    self.errors.append(ConfigError(source, line, col, f"extends {ref}, which was not fetched"))
                continue
            org_text = self.fetched[ref]
            if org_text is None:
                repo = ref.removeprefix("org:")
                self.errors.append(ConfigError(source, line, col,
                                               f"extends {ref}, but the organisation's {repo} repository has "
                                               f"no {POLICY_PATH}"))
                continue
            self.apply(org_text, f"{ref}/{POLICY_PATH}", ref, (*stack, name))
        self.applied.append(name)
        before = len(self.errors)
        layer = document.model_dump(exclude_unset=True)
        self._merge(self.acc, layer, (), located, source)
        if len(self.errors) == before:
            self.errors.extend(_semantic_errors(document, located, source, set(self.acc["teams"])))
            self.errors.extend(_limit_errors(self.acc["rules"], layer.get("rules", []), located, source))
        self.rule_origins.extend([source] * len(layer.get("rules", [])))

    def _merge(self, acc: dict[str, Any], layer: dict[str, Any], path: Path, located: Located, source: str) -> None:
        for key, value in layer.items():
            here = (*path, key)
            if here in (("extends",), ("version",)):
                continue
            if here in _CONCAT:
                acc[key] = [*acc.get(key, []), *value]
            elif here in _EDITABLE and isinstance(value, dict):
                current = list(acc.get(key, []))
                for j, item in enumerate(value.get("remove", [])):
                    if item in current:
                        current.remove(item)
                    else:
                        line, col = located.position((*here, "remove", j))
                        message = f"{_display(here)}: cannot remove {item!r}: it is not inherited"
                        self.errors.append(ConfigError(source, line, col, message))
                current.extend(item for item in value.get("add", []) if item not in current)
                acc[key] = current
            elif isinstance(value, dict) and isinstance(acc.get(key), dict):
                self._merge(acc[key], value, here, located, source)
            else:
                acc[key] = value


def _read(text: str, source: str) -> tuple[schema.PolicyDocument, Located] | list[ConfigError]:
    try:
        located = load_located(text)
    except YamlError as exc:
        return [ConfigError(source, exc.line, exc.col, exc.message)]
    if located.data is None:
        return [ConfigError(source, 1, 1, "the file is empty; a policy starts with `version: 1`")]
    if not isinstance(located.data, dict):
        line, col = located.position(())
        return [ConfigError(source, line, col, "a policy is a mapping of keys (version, rules, ...)")]
    try:
        return schema.PolicyDocument.model_validate(located.data), located
    except ValidationError as exc:
        return _schema_errors(exc, located, source)


def _schema_errors(exc: ValidationError, located: Located, source: str) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = _data_path(loc, located.data)
        kind = error["type"]
        if kind == "extra_forbidden":
            line, col = located.position(path, key=True)
            message = f"{_display(path[:-1]) or 'top level'}: unknown key {path[-1]!r}" + _suggest(path)
        elif kind == "missing":
            line, col = located.position(path)
            message = f"{_display(path[:-1]) or 'top level'}: missing required key {path[-1]!r}"
        elif kind == "too_long" and isinstance(error.get("ctx"), dict):
            line, col = located.position(path, key=True)
            message = (f"{_display(path) or 'top level'}: {error['ctx'].get('actual_length')} entries; "
                       f"the limit is {error['ctx'].get('max_length')}")
        else:
            line, col = located.position(path)
            text = str(error["msg"]).removeprefix("Value error, ")
            if kind == "model_type":
                text = ("expected a message or a mapping" if path and path[-1] in ("allow", "block")
                        else "expected a mapping")
            if isinstance(error.get("input"), bool):
                text += f" (YAML reads an unquoted {str(error['input']).lower()}/yes/no/on/off as a boolean: quote it)"
            message = f"{_display(path)}: {text}" if path else text
        errors.append(ConfigError(source, line, col, message))
    # A union reports once per alternative; the first message for a place is the useful one.
    unique = {(e.line, e.col, e.message.split(":", 1)[0]): e for e in reversed(errors)}
    return sorted(unique.values(), key=lambda e: (e.line, e.col))


def _data_path(loc: tuple[Any, ...], data: Any) -> Path:
    """pydantic's error location as a path into the YAML data, without union tags."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif part in _UNION_TAGS or (isinstance(part, str) and part.startswith("function-")):
            continue
        else:
            current = None
        path.append(part)
    return tuple(path)


def _display(path: Path | tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _UNION_TAGS:
            out += ("." if out else "") + _YAML_NAMES.get(str(part), str(part))
    return out


def _model_at(path: Path) -> type[BaseModel] | None:
    current: Any = schema.PolicyDocument
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = {(f.alias or n): f for n, f in current.model_fields.items()}
        if part not in fields:
            return None
        current = _inner_model(fields[str(part)].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _suggest(path: Path) -> str:
    parent = _model_at(path[:-1])
    if parent is None:
        return ""
    known = [f.alias or n for n, f in parent.model_fields.items()]
    close = difflib.get_close_matches(str(path[-1]), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(known)})"


def _semantic_errors(document: schema.PolicyDocument, located: Located, source: str,
                     teams: set[str]) -> list[ConfigError]:
    """What the schema cannot say: references resolve, names are unique, allows cannot be too wide."""
    errors: list[ConfigError] = []

    def error(path: Path, message: str) -> None:
        line, col = located.position(path)
        errors.append(ConfigError(source, line, col, message))

    def check_reviewers(reviewers: list[str], path: Path) -> None:
        for j, ref in enumerate(reviewers):
            if ref.startswith("team:") and ref.removeprefix("team:") not in teams:
                error((*path, j), f"{_display((*path, j))}: unknown team {ref.removeprefix('team:')!r}; "
                                  "define it under `teams:`")

    if "approvals" in document.model_fields_set:
        check_reviewers(document.approvals.from_, ("approvals", "from"))
    seen: dict[str, int] = {}
    for i, rule in enumerate(document.rules):
        here: Path = ("rules", i)
        if rule.name is not None:
            if rule.name in seen:
                error((*here, "name"),
                      f"rules[{i}].name: {rule.name!r} is already the name of rules[{seen[rule.name]}]")
            seen.setdefault(rule.name, i)
        if rule.require is not None:
            check_reviewers(rule.require.reviewers, (*here, "require", "reviewers"))
        if rule.allow is not None:
            if not rule.when.model_fields_set:
                error(here, f"rules[{i}]: an allow rule needs `when` conditions; an unconditional allow "
                            "would lift every approval requirement")
            if rule.when.paths is not None:
                error((*here, "when", "paths"),
                      f"rules[{i}].when.paths: an allow rule must use only_paths (every changed path), not paths "
                      "(some changed path), or unrelated files changed alongside would be allowed too")
    return errors


def _limit_errors(rules: list[dict[str, Any]], own: list[dict[str, Any]], located: Located,
                  source: str) -> list[ConfigError]:
    """The limits on the merged policy: rules accumulate through `extends`, so a file within the
    limits on its own can still take the whole past them. Reported where this file goes over."""
    if not own:
        return []
    errors: list[ConfigError] = []
    inherited = len(rules) - len(own)
    if len(rules) > schema.MAX_RULES:
        line, col = located.position(("rules",), key=True)
        errors.append(ConfigError(source, line, col,
                                  f"rules: {len(own)} rules here and {inherited} inherited through extends; the "
                                  f"limit is {schema.MAX_RULES}"))
    for what, limit, places in (
            ("title and body patterns", schema.MAX_RULE_REGEXES, _regexes),
            ("paths and only_paths globs", schema.MAX_RULE_PATH_GLOBS, _path_globs)):
        over = _first_over(limit, sum(w for rule in rules[:inherited] for _, w in places(rule)), own, places)
        if over is not None:
            j, where = over
            line, col = located.position(("rules", j, *where))
            errors.append(ConfigError(source, line, col,
                                      f"{_display(('rules', j, *where))}: the policy's rules have more than {limit} "
                                      f"{what} (counting rules inherited through extends)"))
    return errors


_Place = tuple[str | int, ...]  # where in a rule, e.g. ("when", "paths", 3)


def _first_over(limit: int, inherited: int, own: list[dict[str, Any]],
                places: Callable[[dict[str, Any]], list[tuple[_Place, int]]]) -> tuple[int, _Place] | None:
    """(rule index, place in it) of this file's first pattern past `limit`, after `inherited` ones."""
    count = inherited
    for j, rule in enumerate(own):
        for where, weight in places(rule):
            count += weight
            if count > limit:
                return j, where
    return None


def _regexes(rule: dict[str, Any]) -> list[tuple[_Place, int]]:
    """Where a (dumped) rule has a title or body pattern, ("when" | "unless", "title" | "body"), each 1."""
    return [((part, name), 1) for part in ("when", "unless") if isinstance(rule.get(part), dict)
            for name in ("title", "body") if rule[part].get(name) is not None]


def _path_globs(rule: dict[str, Any]) -> list[tuple[_Place, int]]:
    """Where a (dumped) rule has path globs, ("when" | "unless", "paths" | "only_paths", index), each
    weighing the globs it stands for once its braces are expanded."""
    return [((part, name, k), alternatives(glob)) for part in ("when", "unless") if isinstance(rule.get(part), dict)
            for name in ("paths", "only_paths") for k, glob in enumerate(rule[part].get(name) or ())]


def compile_document(document: schema.PolicyDocument, *, source: str, origins: tuple[str, ...] = (),
                     layers: tuple[str, ...] = ()) -> Policy:
    """A validated document as the `Policy` decisions use: globs and patterns compiled once."""
    teams = {name: tuple(m.lower() for m in members) for name, members in document.teams.items()}

    def expand(refs: list[str]) -> tuple[str, ...]:
        out: list[str] = []
        for ref in refs:
            out.extend(teams.get(ref.removeprefix("team:"), ()) if ref.startswith("team:") else (ref.lower(),))
        return tuple(dict.fromkeys(out))

    chains = document.chains
    chain_allows = [model.ChainAllow(actor=GlobSet(tuple(a.actor), ignore_case=True, logins=True),
                                     labels=tuple(a.labels),
                                     commands=tuple(a.commands),
                                     only_paths=GlobSet(tuple(a.only_paths)) if a.only_paths is not None else None,
                                     workflows=GlobSet(tuple(a.workflows)) if a.workflows is not None else None)
                    for a in chains.allow]
    trusted = []
    for bot in document.identities.trusted_bots:
        actor, only = GlobSet((bot.login,), ignore_case=True, logins=True), GlobSet(tuple(bot.only_paths))
        trusted.append(model.TrustedBot(actor, only, bot.approvals))
        if bot.labels or bot.commands:
            chain_allows.append(model.ChainAllow(actor, tuple(bot.labels), tuple(bot.commands), only))
    approvals = document.approvals
    return Policy(
        protected_branches=GlobSet(tuple(_as_list(document.protected_branches))),
        sensitive_paths=GlobSet(tuple(_as_list(document.sensitive_paths))),
        approvals=approvals.required,
        sensitive_approvals=approvals.sensitive,
        min_permission=approvals.min_permission,
        exclude_requesters=approvals.exclude_requesters,
        exclude_committers=approvals.exclude_committers,
        agents=tuple(document.identities.agents),
        bots=tuple(document.identities.bots),
        chains=model.ChainPolicy(
            command_patterns=tuple(_as_list(chains.commands)),
            trigger_labels=tuple(_as_list(chains.trigger_labels)),
            protected_environments=GlobSet(tuple(_as_list(chains.protected_environments))),
            remove_bot_labels=chains.remove_bot_labels,
            allow=tuple(chain_allows),
            ci_events=frozenset(_as_list(chains.ci_events)),
        ),
        task=model.TaskPolicy(required=document.task.required, approved_labels=tuple(document.task.approved_labels),
                              min_permission=document.task.min_permission),
        source=source,
        approvers=expand(approvals.from_),
        approvers_shown=", ".join(approvals.from_),
        stale_after_push=approvals.stale_after_push,
        trusted_bots=tuple(trusted),
        limits=model.Limits(document.limits.files, document.limits.lines),
        rules=tuple(_compile_rule(rule, i, origins[i] if i < len(origins) else source, expand)
                    for i, rule in enumerate(document.rules)),
        tokens=tuple(TokenRule(agents=tuple(AgentMatch(issuer=(a.issuer or "").rstrip("/"), subject=a.subject or "",
                                                       claims=dict(a.claims), key=a.key or "")
                                            for a in rule.agents),
                               permissions={str(k): str(v) for k, v in rule.permissions.items()}, ttl=rule.ttl)
                     for rule in document.tokens),
        layers=layers,
    )


def _as_list(value: Any) -> list[str]:
    # Edits were applied while merging; a document validated on its own may still hold one.
    return list(value) if isinstance(value, list) else [*value.add]


def _compile_condition(when: schema.When) -> model.Condition:
    def globs(values: list[str] | None, ignore_case: bool = False, logins: bool = False) -> GlobSet | None:
        return GlobSet(tuple(values), ignore_case=ignore_case, logins=logins) if values is not None else None

    kinds = None
    if when.actor is not None:
        kinds = frozenset(k for a in when.actor for k in (("bot", "agent") if a == "automated" else (a,)))
    return model.Condition(
        kinds=kinds,
        logins=globs(when.login, ignore_case=True, logins=True),
        events=frozenset(when.event) if when.event is not None else None,
        branches=globs(when.branch),
        head_branches=globs(when.head_branch),
        paths=globs(when.paths),
        only_paths=globs(when.only_paths),
        labels=frozenset(label.lower() for label in when.labels) if when.labels is not None else None,
        title=Pattern(when.title) if when.title is not None else None,
        body=Pattern(when.body) if when.body is not None else None,
        draft=when.draft,
        fork=when.fork,
    )


def _compile_rule(rule: schema.Rule, index: int, origin: str, expand: Any) -> model.Rule:
    name = rule.name or f"rule-{index + 1}"
    when = _compile_condition(rule.when)
    unless = _compile_condition(rule.unless) if rule.unless is not None else None
    if rule.block is not None:
        return model.Rule(name, "block", when, unless, rule.block.message or f"Blocked by rule {name}",
                          rule.block.unblock, origin=origin)
    if rule.require is not None:
        req = rule.require
        shown = ", ".join(req.reviewers)
        message = req.message or f"Rule {name} requires {req.approvals} approval{'s' if req.approvals > 1 else ''}" + (
            f" from {shown}" if shown else "")
        return model.Rule(name, "require", when, unless, message, None, req.approvals, expand(req.reviewers),
                          shown, origin)
    message = rule.allow.message if rule.allow is not None and rule.allow.message else f"Allowed by rule {name}"
    return model.Rule(name, "allow", when, unless, message, origin=origin)

