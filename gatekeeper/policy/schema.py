"""The `.agentgate.yml` language, version 1, as pydantic models.

This module is the single source of truth for what a policy file may say: `load.py` validates each
file against `PolicyDocument`, and `rules/schema.json` is generated from it
(`python -c "from gatekeeper.policy.schema import json_schema_text as t; print(t(), end='')"
> rules/schema.json`). Every default here is the built-in secure
default, so `version: 1` alone decides exactly like having no file at all.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from gatekeeper.policy import model
from gatekeeper.policy.globs import GlobError, alternatives, check_glob
from gatekeeper.policy.patterns import PatternError, check_pattern
from gatekeeper.policy.presets import PRESET_NAMES

SCHEMA_ID = "https://agentgate.dev/schema/v1.json"

# Limits that keep one verdict cheap whatever a policy says. A proposed policy is untrusted input (the
# change preview evaluates open pull requests under it), and the rules of every layer accumulate, so
# `load.py` checks the rule and pattern counts of the merged policy too.
MAX_RULES = 200
MAX_PATTERNS_PER_RULE = 50  # globs and regular expressions, `when` and `unless` together
MAX_RULE_REGEXES = 64  # title and body patterns over all the rules of the merged policy
MAX_COMMAND_PATTERNS = 32
MAX_EXTENDS = 8  # each `org:` entry is a file the worker fetches before it can load the policy
MAX_RULE_PATH_GLOBS = 1000  # `paths` and `only_paths` globs over all the rules of the merged policy
MAX_GLOBS = 200  # in one list such as sensitive_paths
MAX_ONLY_PATHS = 50  # in a trusted bot's or a chain allowance's only_paths
MAX_ENTRIES = 20  # trusted bots, chain allowances
# Globs are counted once braces are expanded (`{a,b}/**` is two): that is what matching costs.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _few_globs(limit: int) -> AfterValidator:
    """At most `limit` globs in a list, braces expanded."""
    def check(values: list[str]) -> list[str]:
        count = sum(alternatives(v) for v in values)
        if count > limit:
            expanded = " once braces are expanded" if count > len(values) else ""
            raise ValueError(f"{count} globs{expanded}; the limit is {limit}")
        return values
    return AfterValidator(check)


def _glob(value: str) -> str:
    try:
        return check_glob(value)
    except GlobError as exc:
        raise ValueError(str(exc)) from None


def _pattern(value: str) -> str:
    try:
        return check_pattern(value)
    except PatternError as exc:
        raise ValueError(str(exc)) from None


def _preset_exists(value: str) -> str:
    if value.startswith("preset:") and value.removeprefix("preset:") not in PRESET_NAMES:
        raise ValueError(f"unknown preset {value!r}; the presets are "
                         + ", ".join(f"preset:{n}" for n in PRESET_NAMES))
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _message_shorthand(value: Any) -> Any:
    return {"message": value} if isinstance(value, str) else value


def _list_or_edit(value: Any) -> str | None:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict | BaseModel):
        return "edit"
    return None


Glob = Annotated[str, AfterValidator(_glob)]
Regex = Annotated[str, AfterValidator(_pattern)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[bot\])?$", max_length=100)]
TeamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)]
# A reviewer is a login or `team:NAME`, NAME defined under `teams:`.
Reviewer = Annotated[str, StringConstraints(
    pattern=r"^(team:[A-Za-z0-9][A-Za-z0-9._-]*|[A-Za-z0-9][A-Za-z0-9._-]*(\[bot\])?)$", max_length=110)]
CommandWord = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9+=_-]*$", max_length=40)]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=60)]
ExtendsRef = Annotated[str, StringConstraints(pattern=r"^(preset:[a-z0-9-]+|org:[A-Za-z0-9._-]+)$"),
                       AfterValidator(_preset_exists)]
Permission = Literal["read", "triage", "write", "maintain", "admin"]
ActorKindName = Literal["human", "bot", "agent", "automated"]
EventName = Literal["pull_request", "merge_group"]


def _one_or_many_of(item: Any) -> Any:
    return BeforeValidator(_one_or_many, json_schema_input_type=item | list[item])


class GlobEdit(_Strict):
    """Change an inherited list instead of replacing it."""

    add: Annotated[list[Glob], _few_globs(MAX_GLOBS)] = Field(default_factory=list, max_length=MAX_GLOBS,
                                                             description="patterns to add to the inherited list")
    remove: list[Glob] = Field(default_factory=list, description="inherited patterns to drop (a loosening)")


class PatternEdit(_Strict):
    add: list[Regex] = Field(default_factory=list, max_length=MAX_COMMAND_PATTERNS,
                             description="patterns to add to the inherited list")
    remove: list[str] = Field(default_factory=list, description="inherited patterns to drop (a loosening)")


class LabelEdit(_Strict):
    add: list[Label] = Field(default_factory=list, description="labels to add to the inherited list")
    remove: list[Label] = Field(default_factory=list, description="inherited labels to drop (a loosening)")


_NOT_LIST_OR_EDIT = "expected a list (replaces the inherited one) or a mapping with add/remove"


_LIST_OR_EDIT = Discriminator(_list_or_edit, custom_error_type="list_or_edit", custom_error_message=_NOT_LIST_OR_EDIT)
GlobsOrEdit = Annotated[Annotated[list[Glob], Field(max_length=MAX_GLOBS), _few_globs(MAX_GLOBS), Tag("list")]
                        | Annotated[GlobEdit, Tag("edit")], _LIST_OR_EDIT]
PatternsOrEdit = Annotated[Annotated[list[Regex], Field(max_length=MAX_COMMAND_PATTERNS), Tag("list")]
                           | Annotated[PatternEdit, Tag("edit")], _LIST_OR_EDIT]
LabelsOrEdit = Annotated[Annotated[list[Label], Tag("list")] | Annotated[LabelEdit, Tag("edit")], _LIST_OR_EDIT]


class TrustedBot(_Strict):
    """A bot trusted for one kind of change, e.g. a dependency bot for lockfile-only updates."""

    login: Glob = Field(description="the bot's login (a glob, case-insensitive), e.g. 'dependabot[bot]'")
    only_paths: Annotated[list[Glob], Field(min_length=1, max_length=MAX_ONLY_PATHS),
                          _few_globs(MAX_ONLY_PATHS)] = Field(
        description="the trust holds only when every changed path matches one of these")
    approvals: int = Field(default=0, ge=0, le=10, description="approvals its pull requests then need")
    labels: list[Label] = Field(default_factory=list, description="trigger labels it may apply then")
    commands: list[CommandWord] = Field(default_factory=list, description="commands it may use then")


class Identities(_Strict):
    agents: list[Login] = Field(default_factory=list,
                                description="more logins to treat as AI coding agents (adds to the built-in list)")
    bots: list[Login] = Field(default_factory=list, description="more logins to treat as bots")
    trusted_bots: list[TrustedBot] = Field(default_factory=list, max_length=MAX_ENTRIES)


class Approvals(_Strict):
    """What an approval is, and how many an automated change into a protected branch needs."""

    required: int = Field(default=model.DEFAULT_POLICY.approvals, ge=0, le=10,
                          description="for a bot's or agent's pull request into a protected branch")
    sensitive: int = Field(default=model.DEFAULT_POLICY.sensitive_approvals, ge=0, le=10,
                           description="when it also changes sensitive paths")
    min_permission: Permission = Field(default="write", description="an approver's least repository permission")
    from_: list[Reviewer] = Field(default_factory=list, alias="from",
                                  description="only these logins / team:NAME count (empty: anyone qualified)")
    exclude_requesters: bool = Field(default=True, description="the human who set the agent on the task cannot approve")
    exclude_committers: bool = Field(default=True, description="who pushed commits to the PR cannot approve")
    stale_after_push: bool = Field(default=True, description="an approval counts only for the head commit it approved")


class Task(_Strict):
    """Task context: an agent's pull request must resolve an issue a human approved for agents."""

    required: bool = Field(default=False, description="an agent's pull request must resolve an approved task "
                                                      "(\"Fixes #N\")")
    approved_labels: Annotated[list[Label], Field(min_length=1)] = Field(
        default_factory=lambda: list(model.TaskPolicy().approved_labels),
        description="labels that approve an issue (or pull request) as a task for agents")
    min_permission: Permission = Field(default="write", description="of whoever applied the label")


class Limits(_Strict):
    """Size limits for changes by agents; `null` removes an inherited limit."""

    files: int | None = Field(default=None, ge=1, description="most changed files")
    lines: int | None = Field(default=None, ge=1, description="most changed lines (additions + deletions)")


class ChainAllow(_Strict):
    actor: Annotated[list[Glob], _one_or_many_of(str), Field(min_length=1)] = Field(
        description="bot or agent login globs this allowance is for")
    labels: list[Label] = Field(default_factory=list, description="trigger labels it may apply ('*' for any)")
    commands: list[CommandWord] = Field(default_factory=list, description="commands it may give other bots")
    only_paths: Annotated[list[Glob], _few_globs(MAX_ONLY_PATHS)] | None = Field(
        default=None, max_length=MAX_ONLY_PATHS, description="every changed path must match, when set")
    workflows: list[Glob] | None = Field(default=None,
                                         description="workflow files or names whose runs it may start")


class Chains(_Strict):
    """Bots driving other bots: commands in comments, trigger labels, deployments."""

    commands: PatternsOrEdit = Field(default_factory=lambda: list(model.COMMAND_PATTERNS),
                                     description="regexes for comment lines addressed to other bots")
    trigger_labels: LabelsOrEdit = Field(default_factory=lambda: list(model.TRIGGER_LABELS),
                                         description="labels that make another bot act (a bot applying one is a chain)")
    protected_environments: GlobsOrEdit = Field(
        default_factory=lambda: list(model.PROTECTED_ENVIRONMENTS),
        description="deployment environments (globs) agentgate answers as a deployment protection rule")
    remove_bot_labels: bool = Field(default=True, description="remove trigger labels a bot or agent applied")
    allow: list[ChainAllow] = Field(default_factory=list, max_length=MAX_ENTRIES,
                                    description="bots allowed some commands, labels or workflow runs")
    ci_events: LabelsOrEdit = Field(default_factory=lambda: list(model.CI_EVENTS),
                                    description="workflow-run events that are ordinary CI when a bot starts them")


OneOrMoreGlobs = Annotated[list[Glob], BeforeValidator(_one_or_many, json_schema_input_type=str | list[str])]
OneOrMoreLabels = Annotated[list[Label], BeforeValidator(_one_or_many, json_schema_input_type=str | list[str])]


class When(_Strict):
    """Conditions; all that are given must hold. A list means any of its entries."""

    actor: Annotated[list[ActorKindName], _one_or_many_of(ActorKindName)] | None = Field(
        default=None, description="the change's actor: an agent if any agent wrote it, else its author's kind")
    login: OneOrMoreGlobs | None = Field(default=None, description="author login globs")
    event: Annotated[list[EventName], _one_or_many_of(EventName)] | None = Field(
        default=None, description="what is judged: a pull request, or a merge group in a merge queue")
    branch: OneOrMoreGlobs | None = Field(default=None, description="base branch globs")
    head_branch: OneOrMoreGlobs | None = Field(default=None, description="head branch globs")
    paths: list[Glob] | None = Field(default=None, description="some changed path matches")
    only_paths: list[Glob] | None = Field(default=None,
                                          description="every changed path matches (and the list is complete)")
    labels: OneOrMoreLabels | None = Field(default=None, description="the PR has one of them")
    title: Regex | None = Field(default=None, description="regex searched in the title (case-insensitive)")
    body: Regex | None = Field(default=None, description="regex searched in the description (case-insensitive)")
    draft: bool | None = Field(default=None, description="the pull request is a draft")
    fork: bool | None = Field(default=None, description="the head is in another repository")

    def pattern_count(self) -> int:
        """Globs (braces expanded) and regular expressions the condition matches with."""
        lists = (self.login, self.branch, self.head_branch, self.paths, self.only_paths)
        globs = sum(alternatives(g) for x in lists if x is not None for g in x)
        return globs + (self.title is not None) + (self.body is not None)


class Message(_Strict):
    message: str | None = Field(default=None, max_length=500, description="shown to reviewers")


class Block(_Strict):
    message: str | None = Field(default=None, max_length=500, description="shown to reviewers")
    unblock: str | None = Field(default=None, max_length=300, description="what lifts the block, shown to reviewers")


class Require(_Strict):
    approvals: int = Field(default=1, ge=1, le=10, description="qualifying human approvals of the head needed")
    reviewers: list[Reviewer] = Field(default_factory=list,
                                      description="approvals must come from these logins / team:NAME")
    message: str | None = Field(default=None, max_length=500, description="shown to reviewers")


class Rule(_Strict):
    """When the conditions hold (and `unless` does not), the outcome applies. The most severe wins:
    block > require > allow; an `allow` only lifts the built-in approval requirement."""

    name: RuleName | None = Field(default=None, description="names the rule in reasons (rule:NAME); default rule-N")
    when: When = Field(default_factory=lambda: When(), description="conditions that must all hold")
    unless: When | None = Field(default=None, description="conditions under which the rule does not apply")
    allow: Annotated[Message, BeforeValidator(_message_shorthand, json_schema_input_type=str | Message)] | None = Field(
        default=None, description="lift the built-in approval requirement (never for sensitive paths)")
    require: Require | None = Field(default=None, description="require more (or specific) approvals")
    block: Annotated[Block, BeforeValidator(_message_shorthand, json_schema_input_type=str | Block)] | None = Field(
        default=None, description="fail the pull request with this message")

    @model_validator(mode="after")
    def _one_outcome(self) -> Rule:
        given = [k for k in ("allow", "require", "block") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a rule needs exactly one of allow, require, block"
                             + (f" (found {', '.join(given)})" if given else ""))
        count = self.when.pattern_count() + (self.unless.pattern_count() if self.unless is not None else 0)
        if count > MAX_PATTERNS_PER_RULE:
            raise ValueError(f"the rule matches with {count} globs (braces expanded) and patterns; the limit is "
                             f"{MAX_PATTERNS_PER_RULE} per rule (`when` and `unless` together)")
        return self

    @property
    def effect(self) -> Literal["allow", "require", "block"]:
        return "block" if self.block is not None else "require" if self.require is not None else "allow"


# ---- tokens: just-in-time credentials for agents (read only from the default branch)

MAX_TOKEN_RULES = 20
# Repository permissions a platform token may carry (GitHub App permission names; GitLab maps them to
# scopes and an access level, see forges/gitlab/tokens.py). Organisation and account permissions are
# not grantable: a token is for one repository.
TokenPermissionName = Literal[
    "actions", "administration", "checks", "contents", "deployments", "discussions", "environments", "issues",
    "metadata", "packages", "pages", "pull_requests", "repository_projects", "security_events", "statuses",
    "workflows"]
TokenLevel = Literal["read", "write", "admin"]
# Issuers whose subjects name a whole platform's tenants: a `subject` for them must fix the owner (org or
# group) literally, or any repository on that platform could mint an ID token that matches.
SHARED_ISSUERS = {"https://token.actions.githubusercontent.com": "repo:", "https://gitlab.com": "project_path:"}
MIN_TTL, MAX_TTL = 60, 3600
# Read at most: on GitHub an agent's token comes from agentgate's own App, so with these it could post
# agentgate's verdict (statuses, checks), answer its deployment reviews (deployments), or change the
# protection that makes agentgate required (administration, environments).
READ_ONLY_FOR_AGENTS = {
    "statuses": "it could post agentgate's own verdict",
    "checks": "it could post agentgate's own check run",
    "deployments": "it could answer agentgate's deployment reviews",
    "administration": "it could change the branch protection that requires agentgate",
    "environments": "it could remove agentgate's deployment protection rule",
}  # GitHub's installation tokens live an hour and cannot be shortened


def _duration(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 1h or 900s")
    if isinstance(value, int):
        seconds = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(value))
        if match is None:
            raise ValueError("a duration such as 30m, 1h or 900s")
        seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not MIN_TTL <= seconds <= MAX_TTL:
        raise ValueError(f"between {MIN_TTL // 60} minute and {MAX_TTL // 60} minutes")
    return seconds


Duration = Annotated[int, BeforeValidator(_duration, json_schema_input_type=str | int)]
ClaimGlob = Annotated[str, StringConstraints(min_length=1, max_length=300)]
ClaimName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=64)]
AgentKeyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class TokenAgent(_Strict):
    """Who may ask: the ID tokens of one OIDC issuer whose `sub` (and other claims) match, or one agent
    key (`agentgate agents add NAME`)."""

    issuer: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=300)] | None = Field(
        default=None, description="an OIDC issuer listed in AGENTGATE_OIDC_ISSUERS")
    subject: ClaimGlob | None = Field(default=None, description="a glob on `sub`: `*` matches anything, `:` "
                                                                "and `/` included; `?` one character")
    claims: dict[ClaimName, ClaimGlob] = Field(default_factory=dict, max_length=20,
                                               description="globs other claims must match, e.g. job_workflow_ref")
    key: AgentKeyName | None = Field(default=None, description="an agent key's name")

    @model_validator(mode="after")
    def _one_kind(self) -> TokenAgent:
        if (self.issuer is None) == (self.key is None):
            raise ValueError("an agent is either an `issuer` (with `subject`) or a `key`")
        if self.key is not None and (self.subject is not None or self.claims):
            raise ValueError("`subject` and `claims` go with an `issuer`, not a `key`")
        if self.issuer is not None:
            if not self.subject:
                raise ValueError("an `issuer` needs a `subject` glob: without it every identity the issuer "
                                 "vouches for would match")
            prefix = SHARED_ISSUERS.get(self.issuer.rstrip("/"))
            if prefix is not None:
                owner = self.subject[len(prefix):].split("/", 1)[0] if self.subject.startswith(prefix) else ""
                if not owner or "*" in owner or "?" in owner or "/" not in self.subject[len(prefix):]:
                    raise ValueError(f"for {self.issuer} the subject must start with {prefix}OWNER/ with the owner "
                                     f"written out (e.g. {prefix}acme/agent-runner:*): this issuer signs for "
                                     "every repository on the platform")
            elif self.subject.strip("*?") == "":
                raise ValueError("the subject must name something: `*` alone matches every identity")
        return self


class TokenRule(_Strict):
    """A grant: which agents may ask, the most their token may carry, and for how long."""

    agents: Annotated[list[TokenAgent], Field(min_length=1, max_length=20)]
    permissions: Annotated[dict[TokenPermissionName, TokenLevel], Field(min_length=1)] = Field(
        description="the most a token may carry; an agent that names none gets exactly these")
    ttl: Duration = Field(default=1800, description="how long a token lives at most: 1m to 1h (e.g. 30m)")

    @model_validator(mode="after")
    def _not_agentgate_itself(self) -> TokenRule:
        for name, why in READ_ONLY_FOR_AGENTS.items():
            if self.permissions.get(name, "read") != "read":  # type: ignore[call-overload]
                raise ValueError(f"{name} can be granted at most read: {why}")
        return self


class PolicyDocument(_Strict):
    """An `.agentgate.yml` file, language version 1."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, title="agentgate policy",
                              json_schema_extra={"$id": SCHEMA_ID})

    version: Literal[1] = Field(description="the language version; always 1")
    extends: Annotated[list[ExtendsRef], _one_or_many_of(str)] = Field(
        default_factory=list, max_length=MAX_EXTENDS,
        description="preset:NAME (shipped with agentgate) or org:REPO (the org's REPO/.agentgate.yml, "
                    "usually org:.github), applied in order before this file")
    identities: Identities = Field(default_factory=lambda: Identities(),
                                   description="who counts as an agent or a bot, and bots trusted for some changes")
    teams: dict[TeamName, list[Login]] = Field(default_factory=dict,
                                               description="named groups of logins, used as team:NAME")
    protected_branches: GlobsOrEdit = Field(
        default_factory=lambda: list(model.PROTECTED_BRANCHES),
        description="base branches (globs) where bots' and agents' changes need approval; "
                    "the default branch always counts")
    sensitive_paths: GlobsOrEdit = Field(default_factory=lambda: list(model.SENSITIVE_PATHS),
                                         description="paths (globs) whose change needs approvals.sensitive")
    approvals: Approvals = Field(default_factory=lambda: Approvals())
    task: Task = Field(default_factory=lambda: Task())
    limits: Limits = Field(default_factory=lambda: Limits())
    chains: Chains = Field(default_factory=lambda: Chains())
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES,
                              description=f"at most {MAX_RULES}, counting those inherited through extends")
    tokens: list[TokenRule] = Field(default_factory=list, max_length=MAX_TOKEN_RULES,
                                    description="who may get a short-lived token for this repository and with what "
                                                "permissions; read only from the default branch; none: no tokens")


def json_schema() -> dict[str, Any]:
    schema = PolicyDocument.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"

