"""The policy a decision is made under, and the error value an invalid policy file becomes."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatekeeper.policy.globs import GlobSet

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
