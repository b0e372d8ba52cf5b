"""The policy a decision is made under, and the error value an invalid policy file becomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gatekeeper.policy.globs import GlobSet
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
    r"^@[\w-]+(?:\[bot\])?\s+(?:merge|deploy|ship|release|publish|approve|rebase|squash|run|retest)\b",
    r"^bors\s+(?:r\+|r=|merge|try|delegate)",
    r"^@?(?:dependabot|renovate)\s+(?:merge|squash and merge|rebase|recreate)\b",
    r"^/(?:gcbrun|azp run|run-tests?)\b",
)

TRIGGER_LABELS = ("automerge", "auto-merge", "merge", "deploy", "ok-to-test", "lgtm", "approved", "ship-it",
                  "safe-to-test", "run-ci", "release")

PROTECTED_ENVIRONMENTS = ("production", "prod", "prod-*", "production-*", "live")


@dataclass(frozen=True)
class ChainAllow:
    """A permitted chain, e.g. dependabot may apply `automerge` when only lockfiles change."""

    actor: GlobSet  # logins (globs)
    labels: tuple[str, ...] = ()  # trigger labels it may apply ("*" for any)
    commands: tuple[str, ...] = ()  # command words it may use ("deploy", "merge", ...)
    only_paths: GlobSet | None = None  # every changed path must match, when set


@dataclass(frozen=True)
class ChainPolicy:
    command_patterns: tuple[str, ...] = COMMAND_PATTERNS
    trigger_labels: tuple[str, ...] = TRIGGER_LABELS
    protected_environments: GlobSet = field(default_factory=lambda: GlobSet(PROTECTED_ENVIRONMENTS))
    remove_bot_labels: bool = True
    allow: tuple[ChainAllow, ...] = ()


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
    # What the policy was built from, in precedence order (lowest first), e.g. ("preset:strict", ".agentgate.yml").
    layers: tuple[str, ...] = field(default=(), compare=False)


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
