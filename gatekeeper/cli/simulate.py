"""Dry runs: the verdict a policy gives for a webhook payload, with no platform and no Redis.

`agentgate simulate` builds `PullRequestFacts` from a GitHub `pull_request` or `pull_request_review`
payload plus what the payload does not carry (changed files, reviews, extra labels), then asks the
same decision core the worker uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import PERMISSIONS, ChangedFile, PullRequestFacts, Review
from gatekeeper.core.identity import classify
from gatekeeper.core.verdict import Verdict
from gatekeeper.forges.github.users import github_user
from gatekeeper.policy import InvalidPolicy, Policy

SUPPORTED_EVENTS = ("pull_request", "pull_request_review")

# What a reviewer's `author_association` says about their permission, when --review does not.
_ASSOCIATION_PERMISSION = {"OWNER": "admin", "MEMBER": "write", "COLLABORATOR": "write"}


class SimulationError(ValueError):
    """The inputs cannot be simulated; the message says which and why."""


@dataclass(frozen=True)
class ReviewSpec:
    login: str
    state: str
    sha: str | None = None
    permission: str = "write"

    @classmethod
    def parse(cls, text: str) -> ReviewSpec:
        """LOGIN:STATE[:SHA][:PERMISSION], e.g. `alice:approved`, `bob:approved:abc123:admin`."""
        parts = text.split(":")
        if len(parts) < 2 or len(parts) > 4 or not parts[0]:
            raise SimulationError(f"--review {text!r}: expected LOGIN:STATE[:SHA][:PERMISSION]")
        login, state = parts[0], parts[1].upper().replace(" ", "_")
        if state not in ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"):
            raise SimulationError(f"--review {text!r}: state is one of approved, changes_requested, commented, "
                                  "dismissed")
        sha, permission = None, "write"
        rest = parts[2:]
        if rest and rest[-1] in PERMISSIONS:
            permission = rest.pop()
        if rest:
            sha = rest[0] or None
        if rest[1:]:
            raise SimulationError(f"--review {text!r}: unknown permission {rest[1]!r}")
        return cls(login, state, sha, permission)


def facts_from_github(event: str, payload: Mapping[str, Any], policy: Policy | InvalidPolicy, *,
                      files: Iterable[str] | None = None, reviews: Iterable[ReviewSpec] = (),
                      labels: Iterable[str] = (), requesters: Iterable[str] = ()) -> PullRequestFacts:
    if event not in SUPPORTED_EVENTS:
        raise SimulationError(f"event {event!r} is not supported; use one of {', '.join(SUPPORTED_EVENTS)}")
    pr = payload.get("pull_request")
    if not isinstance(pr, Mapping):
        raise SimulationError(f"the payload has no pull_request object (is it a {event} payload?)")
    agents = policy.agents if isinstance(policy, Policy) else ()
    bots = policy.bots if isinstance(policy, Policy) else ()
    repo = payload.get("repository") or {}
    head, base = pr.get("head") or {}, pr.get("base") or {}
    head_sha = str(head.get("sha") or "")

    all_reviews: list[Review] = []
    review = payload.get("review")
    if event == "pull_request_review" and isinstance(review, Mapping):
        all_reviews.append(Review(
            classify(github_user(review.get("user")), agents=agents, bots=bots),
            str(review.get("state") or "").upper(),
            str(review.get("commit_id") or head_sha),
            _ASSOCIATION_PERMISSION.get(str(review.get("author_association") or ""), "read"),
            review.get("submitted_at"), review.get("id")))
    for spec in reviews:
        reviewer = github_user({"login": spec.login})
        all_reviews.append(Review(classify(reviewer, agents=agents, bots=bots), spec.state,
                                  spec.sha or head_sha, spec.permission))

    changed = tuple(ChangedFile(path) for path in (files or ()) if path.strip())
    counted = pr.get("changed_files")
    # Unknown files may be sensitive: with none given, the list is incomplete, as when a platform caps it.
    complete = files is not None and (not isinstance(counted, int) or len(changed) >= counted)
    head_repo = (head.get("repo") or {}).get("full_name")
    return PullRequestFacts(
        repo=str(repo.get("full_name") or (base.get("repo") or {}).get("full_name") or "unknown/unknown"),
        number=int(pr.get("number") or payload.get("number") or 0),
        author=classify(github_user(pr.get("user"), pr.get("performed_via_github_app")), agents=agents, bots=bots),
        head_sha=head_sha,
        head_ref=str(head.get("ref") or ""),
        base_ref=str(base.get("ref") or ""),
        base_sha=str(base.get("sha") or ""),
        default_branch=str(repo.get("default_branch") or "main"),
        head_repo=head_repo,
        state=str(pr.get("state") or "open"),
        draft=bool(pr.get("draft")),
        title=str(pr.get("title") or ""),
        body=str(pr.get("body") or ""),
        labels=tuple(dict.fromkeys([*(str(lb.get("name")) for lb in pr.get("labels") or [] if isinstance(lb, Mapping)),
                                    *labels])),
        changed_files=changed,
        changed_files_complete=complete,
        reviews=tuple(all_reviews),
        requesters=tuple(requesters),
    )


def simulate(policy: Policy | InvalidPolicy, facts: PullRequestFacts) -> Verdict:
    return evaluate_pull_request(policy, facts)


def render_text(verdict: Verdict, facts: PullRequestFacts, policy_source: str) -> str:
    lines = [f"{verdict.outcome.value}: {verdict.description()}",
             f"  pull request #{facts.number} {facts.head_ref} -> {facts.base_ref} by {facts.author.login} "
             f"({facts.author.kind.value}), {len(facts.changed_files)} changed file(s), policy {policy_source}"]
    if not facts.changed_files_complete:
        lines.append("  note: the changed files given are fewer than the payload counts (or none were given); "
                     "treated as an incomplete list")
    for reason in verdict.reasons:
        lines.append(f"  [{reason.outcome.value}] {reason.code}: {reason.message}")
        if reason.unblock:
            lines.append(f"      to unblock: {reason.unblock}")
    return "\n".join(lines)


def render_json(verdict: Verdict, facts: PullRequestFacts, policy_source: str) -> str:
    return json.dumps({"policy": policy_source, "verdict": verdict.to_dict(), "facts": facts.to_dict()}, indent=2)


def simulate_token(args: Any) -> int:
    """`agentgate simulate --policy FILE --token-claims CLAIMS.json ...`: the grant the policy's `tokens`
    section gives a request, without any issuer or platform. Exit 0 granted, 1 refused, 2 bad input."""
    import sys

    from gatekeeper.core import grants
    from gatekeeper.core.facts import Actor, ActorKind, LabelApplied, TaskRef
    from gatekeeper.policy import InvalidPolicy, load_policy

    try:
        with open(args.policy, encoding="utf-8") as fh:
            policy = load_policy(fh.read(), source=args.policy)
        if args.token_claims:
            with open(args.token_claims, encoding="utf-8") as fh:
                raw = json.load(fh)
            claims = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw.items()
                      if isinstance(v, str | int | bool)}
            agent = grants.AgentIdentity("oidc", issuer=claims.get("iss", "").rstrip("/"),
                                         subject=claims.get("sub", ""), claims=claims)
        else:
            agent = grants.AgentIdentity("key", key_name=args.agent_key)
        asked = None
        if args.permissions:
            asked = dict(item.split("=", 1) for item in args.permissions.split(",") if item.strip())
        applied = []
        for spec in args.task_label or []:
            parts = spec.split(":")
            if len(parts) not in (2, 3) or not all(parts):
                raise ValueError(f"--task-label {spec!r}: expected LABEL:LOGIN or LABEL:LOGIN:PERMISSION")
            applied.append(LabelApplied(parts[0], Actor(parts[1], ActorKind.HUMAN),
                                        parts[2] if len(parts) == 3 else "write"))
    except (OSError, ValueError) as exc:
        print(f"agentgate simulate: {exc}", file=sys.stderr)
        return 2
    if isinstance(policy, InvalidPolicy):
        for error in policy.errors:
            print(error, file=sys.stderr)
        return 2
    task = TaskRef(1, args.task_state, tuple(a.label for a in applied), tuple(applied))
    decision = grants.decide(policy.tokens, agent, asked, task,
                             grants.TaskApproval(policy.task.approved_labels, policy.task.min_permission))
    if isinstance(decision, grants.Refusal):
        print(f"refused ({decision.code}): {decision.reason}")
        return 1
    perms = ", ".join(f"{k}: {v}" for k, v in sorted(decision.permissions.items()))
    print(f"granted to {agent.principal}: {perms} for {decision.ttl // 60} min "
          f"(task approved by {decision.approved_by} with {decision.approved_label})")
    return 0
