"""The in-memory platform behind the agent-token tests (tests/test_token_service.py,
tests/test_token_attacks.py): a repository with a policy per commit and tasks with their label
history, an issuer that records what it mints and revokes, and the policy that grants agents a token."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gatekeeper.core.facts import User
from gatekeeper.forges.port import ForgeError, Issue, IssueEvent, MintedToken
from tests.memoryforge import MemoryForge

AGENT_SUBJECT = "repo:acme/agent-runner:*"


def grant_policy(issuer: str, *, claims: str | None = None) -> str:
    """An `.agentgate.yml` granting a token (contents and pull requests write, issues read, 10 minutes)
    to agents from `issuer` with the agent runner's subject (and `claims`, a YAML flow mapping, if
    given) and to the agent key `runner-1`."""
    claims_line = f"        claims: {claims}\n" if claims else ""
    return f"""version: 1
tokens:
  - agents:
      - issuer: {issuer}
        subject: "{AGENT_SUBJECT}"
{claims_line}      - key: runner-1
    permissions: {{contents: write, pull_requests: write, issues: read}}
    ttl: 10m
"""


@dataclass
class TaskForge(MemoryForge):
    """A repository with a policy per commit, issues (and PRs as issues) with their label history."""

    texts: dict[str, str] = field(default_factory=dict)  # sha -> .agentgate.yml
    issues: dict[int, Issue] = field(default_factory=dict)
    events: dict[int, list[IssueEvent]] = field(default_factory=dict)

    def get_file(self, path: str, ref: str | None) -> str | None:
        self.reads.append(f"file {path}@{ref}")
        return self.texts.get(ref or "") if path == ".agentgate.yml" else None

    def get_issue(self, number: int) -> Issue | None:
        self.reads.append(f"issue {number}")
        return self.issues.get(number)

    def issue_events(self, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
        self.reads.append(f"events {number}")
        return list(self.events.get(number, []))

    # -- what happens on the platform
    def label(self, number: int, label: str, actor: User) -> None:
        issue = self.issues[number]
        self.issues[number] = replace(issue, labels=(*[x for x in issue.labels if x != label], label))
        self.events.setdefault(number, []).append(IssueEvent("labeled", actor, label=label))

    def unlabel(self, number: int, label: str, actor: User) -> None:
        issue = self.issues[number]
        self.issues[number] = replace(issue, labels=tuple(x for x in issue.labels if x != label))
        self.events.setdefault(number, []).append(IssueEvent("unlabeled", actor, label=label))


@dataclass
class RecordingIssuer:
    """A TokenIssuer that records what it mints and revokes. Like GitHub's API it finds a repository
    whatever the case of its name, and its reader reads as that name (as `open_github` does); asking
    for a reader is itself recorded in the forge's reads."""

    forge: TaskForge
    platform: str = "github"
    minted: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    fail_revoke: bool = False
    on_mint: Any = None  # called after minting, before the answer: what happens meanwhile elsewhere
    on_revoke: Any = None
    counter: int = 0
    token_padding: str = "Z" * 300  # long and opaque after the counter, as GitHub's tokens now are

    def reader(self, repo: str) -> TaskForge:
        self.forge.reads.append(f"reader {repo}")
        if repo.lower() != self.forge.repo.lower():
            raise ForgeError(f"agentgate is not installed on {repo}", 404)
        return replace(self.forge, repo=repo)  # shares the repository's state; reads as the name asked

    def mint(self, repo: str, permissions: dict[str, str], ttl: int, name: str) -> MintedToken:
        self.counter += 1
        self.minted.append((repo, dict(permissions), ttl))
        token = f"ghs_{self.counter:04d}" + self.token_padding
        if self.on_mint is not None:
            self.on_mint()
        return MintedToken(token, 4_000_000_000.0, dict(permissions), handle=str(self.counter))

    def revoke(self, repo: str, token: str, handle: str) -> None:
        if self.on_revoke is not None:
            self.on_revoke()
        if self.fail_revoke:
            raise ForgeError("GitHub answered 502", 502)
        self.revoked.append(token)
