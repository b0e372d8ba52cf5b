"""Verdicts per second for a 50-rule policy on a pull request with 300 changed files, on one core.

    python -m bench [--seconds S] [--json]

`warm` re-evaluates the same pull request, as the worker does on every review, label and push event
(the policy's compiled globs and per-path results are reused). `cold` gives every verdict paths the
policy has never seen, so each is matched against all its glob sets: a new pull request's first evaluation.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import Actor, ActorKind, ChangedFile, Commit, PullRequestFacts, Review
from gatekeeper.core.verdict import Outcome
from gatekeeper.policy import Policy, load_policy

RULES = 50
FILES = 300


def policy_text(rules: int = RULES) -> str:
    """A policy like a large organisation's: preset, teams, trusted bots and many varied rules."""
    lines = ["version: 1", "extends: [preset:coding-agents, preset:dependency-bots]",
             "teams:", "  security: [sec1, sec2, sec3]", "  platform: [plat1, plat2]",
             "limits: {files: 1000, lines: 100000}", "rules:"]
    kinds = ["agent", "bot", "automated", "human"]
    for i in range(rules - 4):  # the two presets bring 4 rules
        shape = i % 6
        lines.append(f"  - name: rule-{i}")
        if shape == 0:
            lines.append(f"    when: {{actor: {kinds[i % 4]}, branch: 'release/{i}/**', paths: ['svc{i}/**']}}")
            lines.append("    require: {approvals: 2, reviewers: [team:platform]}")
        elif shape == 1:
            lines.append(f"    when: {{paths: ['**/migrations/{i}_*.sql', 'db/{i}/**']}}")
            lines.append("    require: {approvals: 1, reviewers: [team:security]}")
        elif shape == 2:
            lines.append(f"    when: {{actor: agent, labels: [area-{i}, 'needs-{i}']}}")
            lines.append(f"    block: Agents may not touch area {i}")
        elif shape == 3:
            lines.append(f"    when: {{actor: automated, title: '\\b(hotfix|urgent)-{i}\\b'}}")
            lines.append(f"    block: Rule {i}")
        elif shape == 4:
            lines.append(f"    when: {{actor: agent, only_paths: ['docs/{i}/**', '**/*.md']}}")
            lines.append("    allow: Documentation only")
        else:
            lines.append(f"    when: {{login: 'bot-{i}*', head_branch: 'feature/{i}/**', body: 'ticket-{i}'}}")
            lines.append("    require: {approvals: 1}")
    return "\n".join(lines) + "\n"


def pull_request(rng: random.Random, salt: str = "") -> PullRequestFacts:
    dirs = ["src", "src/app", "src/lib/core", "tests", "docs", "web/static/js", "svc3", "db/7", "charts/x"]
    files = tuple(ChangedFile(f"{rng.choice(dirs)}/{salt}file_{i}.{rng.choice(['py', 'ts', 'md', 'sql', 'yaml'])}",
                              additions=rng.randint(0, 40), deletions=rng.randint(0, 20)) for i in range(FILES))
    agent = Actor("copilot-swe-agent[bot]", ActorKind.AGENT, why="known AI coding agent")
    human = Actor("alice", ActorKind.HUMAN)
    return PullRequestFacts(
        repo="acme/shop", number=42, author=agent, head_sha="a" * 40, head_ref="copilot/fix-checkout",
        base_ref="main", base_sha="b" * 40, title="Fix the checkout flow", body="Fixes #12\n" + "words " * 200,
        labels=("bug", "area-7"), changed_files=files,
        reviews=(Review(human, "APPROVED", "a" * 40, "write"), Review(Actor("bob", ActorKind.HUMAN), "COMMENTED",
                                                                     "a" * 40, "read")),
        commits=(Commit("c" * 40, "Fix checkout", agent, agent),), requesters=("carol",))


def rate(policy: Policy, prs: list[PullRequestFacts], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for facts in prs:
            evaluate_pull_request(policy, facts)
        done += len(prs)
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def cold_rate(policy: Policy, prs: list[PullRequestFacts]) -> float:
    """Each verdict with every memo emptied first: every glob set is matched against all 300 paths."""
    index = policy.path_index
    start = time.perf_counter()
    for facts in prs:
        index.memo.clear()
        index.matcher.directories.clear()
        for globset in index.globsets:
            globset._memo.clear()
        evaluate_pull_request(policy, facts)
    return len(prs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    policy = load_policy(policy_text(), source="bench.yml")
    assert isinstance(policy, Policy), policy  # noqa: S101 - the benchmark's own policy must be valid
    assert len(policy.rules) == RULES, len(policy.rules)  # noqa: S101
    rng = random.Random(7)
    warm_pr = pull_request(rng)
    verdict = evaluate_pull_request(policy, warm_pr)
    assert verdict.outcome is not Outcome.ERROR, verdict  # noqa: S101
    warm = rate(policy, [warm_pr], args.seconds)
    cold = cold_rate(policy, [pull_request(rng, salt=f"n{i}_") for i in range(100)])
    result = {"rules": RULES, "changed_files": FILES, "verdict": verdict.outcome.value,
              "warm_verdicts_per_second": round(warm), "cold_verdicts_per_second": round(cold)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{RULES}-rule policy, {FILES} changed files, one core, verdict {verdict.outcome.value}:")
        print(f"  warm (same pull request re-evaluated): {warm:,.0f} verdicts/s")
        print(f"  cold (every path new to the policy):   {cold:,.0f} verdicts/s")


if __name__ == "__main__":
    main()
