"""The policy a decision is made under, and the error value an invalid policy file becomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from gatekeeper.core.grants import TokenRule
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.pathindex import PathIndex
from gatekeeper.policy.patterns import Pattern

PROTECTED_BRANCHES = ("main", "master", "release/*", "release/**", "production")

SENSITIVE_PATHS = (
    # CI: workflows and actions run with the repository's secrets.
    ".github/workflows/**",
    ".github/actions/**",
    "**/action.yml",
    "**/action.yaml",
    ".gitlab-ci.yml",
    ".gitlab/ci/**",
    ".circleci/**",
    ".buildkite/**",
    "Jenkinsfile",
    "azure-pipelines.yml",
    # Who must review, and agentgate's own policy.
    "CODEOWNERS",
    ".github/CODEOWNERS",
    "docs/CODEOWNERS",
    ".gitlab/CODEOWNERS",
    ".agentgate.yml",
    ".agentgate.yaml",
    # Key material.
    "**/*.pem",
    "**/*.key",
    "**/*.p12",
    "**/*.pfx",
    "**/id_rsa*",
    "**/id_ed25519*",
    "**/.env",
    "**/.env.*",
    # Deploy configuration.
    "deploy/**",
    "deployment/**",
    "k8s/**",
    "kubernetes/**",
    "helm/**",
    "charts/**",
    "terraform/**",
    "**/*.tf",
    "**/*.tfvars",
)


# Comment commands addressed to other bots. Matched against a normalised comment (NFKC, no
# zero-width characters, confusables folded), line by line, case-insensitively.
COMMAND_PATTERNS = (
    r"^/(?:deploy|merge|ship|release|publish|approve|lgtm|ok-to-test|retest|test|rebase|automerge|land)\b",
    # "@someone merge conflicts found" is a report, not a command.
    r"^@[\w-]+(?:\[bot\])?\s+(?!merge\s+conflicts?\b)(?:merge|deploy|ship|release|publish|approve|rebase|squash|run|retest)\b",
    r"^bors\s+(?:r\+|r=|merge|try|delegate)",
    r"^@?(?:dependabot|renovate)\s+(?:merge|squash and merge|rebase|recreate)\b",
    r"^/(?:gcbrun|azp run|run-tests?)\b",
)

TRIGGER_LABELS = ("automerge", "auto-merge", "merge", "deploy", "ok-to-test", "lgtm", "approved", "ship-it",
                  "safe-to-test", "run-ci", "release")

PROTECTED_ENVIRONMENTS = ("production", "prod", "prod-*", "production-*", "live")


# Workflow-run events that are ordinary CI, not one bot driving another: a bot's own PR's checks, the
# merge queue, schedules, and the platform's own dynamic runs. Every other event a bot starts counts.
CI_EVENTS = ("pull_request", "pull_request_review", "pull_request_review_comment", "merge_group", "schedule",
             "dynamic")


@dataclass(frozen=True)
class ChainAllow:
    """A permitted chain, e.g. dependabot may apply `automerge` when only lockfiles change."""

    actor: GlobSet  # logins (globs)
    labels: tuple[str, ...] = ()  # trigger labels it may apply ("*" for any)
    commands: tuple[str, ...] = ()  # command words it may use ("deploy", "merge", ...)
    only_paths: GlobSet | None = None  # every changed path must match, when set
    workflows: GlobSet | None = None  # workflow files or names whose runs it may start


@dataclass(frozen=True)
class ChainPolicy:
    command_patterns: tuple[str, ...] = COMMAND_PATTERNS
    trigger_labels: tuple[str, ...] = TRIGGER_LABELS
    protected_environments: GlobSet = field(default_factory=lambda: GlobSet(PROTECTED_ENVIRONMENTS))
    remove_bot_labels: bool = True
    allow: tuple[ChainAllow, ...] = ()
    ci_events: frozenset[str] = frozenset(CI_EVENTS)


@dataclass(frozen=True)
class TaskPolicy:
    """Task context: an agent's change must resolve an issue a human approved for agents."""

    required: bool = False
    approved_labels: tuple[str, ...] = ("agent-approved", "ready-for-agent")
    min_permission: str = "write"  # of whoever applied the label


@dataclass(frozen=True)
class TrustedBot:
    """A bot trusted for one kind of change: when every changed path matches `only_paths`, its pull
    requests need `approvals` instead of the protected-branch requirement (sensitive paths still count)."""

    actor: GlobSet  # logins (globs, case-insensitive)
    only_paths: GlobSet
    approvals: int = 0


@dataclass(frozen=True)
class Limits:
    """Size limits for agents' changes; None means no limit."""

    max_files: int | None = None
    max_lines: int | None = None


@dataclass(frozen=True)
class Condition:
    """A rule's conditions; every one that is set must hold. Set-valued conditions hold when any entry does."""

    kinds: frozenset[str] | None = None  # "human" | "bot" | "agent"
    logins: GlobSet | None = None
    events: frozenset[str] | None = None
    branches: GlobSet | None = None  # base branch
    head_branches: GlobSet | None = None
    paths: GlobSet | None = None  # some changed path matches
    only_paths: GlobSet | None = None  # every changed path matches
    labels: frozenset[str] | None = None  # lower-cased
    title: Pattern | None = None
    body: Pattern | None = None
    draft: bool | None = None
    fork: bool | None = None

    @cached_property
    def checks(self) -> tuple[Callable[[Any], bool], ...]:
        """The conditions that are set, cheapest first, as predicates over the decision's subject (an
        object with kind, event, draft, fork, login, base_ref, head_ref, labels, title, body and the
        methods any_path(globset) / all_paths(globset) / search(pattern, text)). Patterns come last and
        are searched through the subject, which holds the verdict's regex budget."""
        out: list[Callable[[Any], bool]] = []
        if (kinds := self.kinds) is not None:
            out.append(lambda s: s.kind in kinds)
        if (events := self.events) is not None:
            out.append(lambda s: s.event in events)
        if (draft := self.draft) is not None:
            out.append(lambda s: s.draft is draft)
        if (fork := self.fork) is not None:
            out.append(lambda s: s.fork is fork)
        if (labels := self.labels) is not None:
            out.append(lambda s: not labels.isdisjoint(s.labels))
        if self.logins is not None:
            login_matches = self.logins.match
            out.append(lambda s: login_matches(s.login))
        if self.branches is not None:
            branch_matches = self.branches.match
            out.append(lambda s: branch_matches(s.base_ref))
        if self.head_branches is not None:
            head_matches = self.head_branches.match
            out.append(lambda s: head_matches(s.head_ref))
        if (paths := self.paths) is not None:
            out.append(lambda s: s.any_path(paths))
        if (only_paths := self.only_paths) is not None:
            out.append(lambda s: s.all_paths(only_paths))
        if (title := self.title) is not None:
            out.append(lambda s: s.search(title, s.title))
        if (body := self.body) is not None:
            out.append(lambda s: s.search(body, s.body))
        return tuple(out)

    @property
    def patterns(self) -> tuple[tuple[str, Pattern], ...]:
        """("title" | "body", pattern) for each regular expression the condition searches."""
        return tuple((name, p) for name, p in (("title", self.title), ("body", self.body)) if p is not None)


Effect = Literal["allow", "require", "block"]


@dataclass(frozen=True)
class Rule:
    name: str
    effect: Effect
    when: Condition = field(default_factory=Condition)
    unless: Condition | None = None
    message: str = ""
    unblock: str | None = None
    approvals: int = 0  # for `require`
    reviewers: tuple[str, ...] = ()  # lower-cased logins, teams expanded; empty: any qualified human
    reviewers_shown: str = ""  # as the policy wrote them, for messages
    origin: str = ""  # the file the rule came from


@dataclass(frozen=True)
class Policy:
    """A compiled policy. The built-in secure default is `DEFAULT_POLICY`."""

    protected_branches: GlobSet = field(default_factory=lambda: GlobSet(PROTECTED_BRANCHES))
    sensitive_paths: GlobSet = field(default_factory=lambda: GlobSet(SENSITIVE_PATHS))
    approvals: int = 1
    sensitive_approvals: int = 2
    min_permission: str = "write"
    exclude_requesters: bool = True
    exclude_committers: bool = True
    agents: tuple[str, ...] = ()
    bots: tuple[str, ...] = ()
    chains: ChainPolicy = field(default_factory=ChainPolicy)
    task: TaskPolicy = field(default_factory=TaskPolicy)
    source: str = "built-in secure default"
    # Only these (lower-cased) logins' approvals count; empty means any qualified human.
    approvers: tuple[str, ...] = ()
    approvers_shown: str = ""
    stale_after_push: bool = True
    trusted_bots: tuple[TrustedBot, ...] = ()
    limits: Limits = field(default_factory=Limits)
    rules: tuple[Rule, ...] = ()
    tokens: tuple[TokenRule, ...] = ()  # agent-token grants; honoured only from the default branch
    # What the policy was built from, in precedence order (lowest first), e.g. ("preset:strict", ".agentgate.yml").
    layers: tuple[str, ...] = field(default=(), compare=False)

    @cached_property
    def rules_by_kind(self) -> dict[str, tuple[Rule, ...]]:
        """The rules whose `when` can hold for each actor kind, in order: most rules name one."""
        return {kind: tuple(r for r in self.rules if r.when.kinds is None or kind in r.when.kinds)
                for kind in ("human", "bot", "agent")}

    @cached_property
    def searches_by_kind(self) -> dict[str, int]:
        """How many title and body searches a verdict on a change by each actor kind may make: what its
        regex budget is divided among (see `patterns.RegexBudget`)."""
        return {kind: sum(len(c.patterns) for rule in rules for c in (rule.when, rule.unless) if c is not None)
                for kind, rules in self.rules_by_kind.items()}

    @cached_property
    def rule_labels(self) -> frozenset[str]:
        """Every (lower-cased) label a rule's `when` or `unless` reads: removing one may flip a verdict."""
        return frozenset(label for rule in self.rules for c in (rule.when, rule.unless)
                         if c is not None and c.labels is not None for label in c.labels)

    @cached_property
    def path_index(self) -> PathIndex:
        """Every path glob set the decision asks about, for one pass over the changed files."""
        sets = [self.sensitive_paths, *(bot.only_paths for bot in self.trusted_bots)]
        for rule in self.rules:
            for condition in (rule.when, rule.unless):
                if condition is not None:
                    sets.extend(g for g in (condition.paths, condition.only_paths) if g is not None)
        return PathIndex.of(sets)


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class ConfigError:
    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


@dataclass(frozen=True)
class InvalidPolicy:
    """A policy file that could not be understood. It is an input like any other: it yields `error`."""

    errors: tuple[ConfigError, ...]
    source: str = ".agentgate.yml"
