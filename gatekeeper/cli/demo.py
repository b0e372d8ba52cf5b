"""`agentgate replay`: sample deliveries for a first look at `agentgate dev` without GitHub.

Each scenario seeds the sample platform state the recording forge reads, sends real-shaped signed
webhooks (built from GitHub's published example payloads), and prints the status agentgate decided."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import requests

REPO = "octo-org/widgets"


def _sample(name: str) -> dict[str, Any]:
    return dict(json.loads(resources.files("gatekeeper.samples").joinpath(name).read_text("utf-8")))


def _user(login: str) -> dict[str, Any]:
    bot = login.endswith("[bot]")
    return {"login": login, "id": abs(hash(login)) % 10**8, "type": "Bot" if bot else "User"}


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


@dataclass
class Step:
    title: str
    event: str
    payload: dict[str, Any]
    sample: dict[str, Any]
    number: int
    head_sha: str


@dataclass
class Scenario:
    name: str
    steps: list[Step] = field(default_factory=list)


def _pr_payload(number: int, author: str, head: str, files_note: str = "") -> dict[str, Any]:
    payload = _sample("pull_request.opened.json")
    pr = payload["pull_request"]
    pr.update(number=number, user=_user(author), title=f"Sample change {files_note}".strip())
    pr["head"].update(sha=head, ref=f"agent/task-{number}")
    pr["base"].update(ref="main", sha=_sha("base"))
    pr["base"]["repo"]["default_branch"] = "main"
    payload.update(number=number, sender=_user(author), installation={"id": 1})
    payload["repository"].update(full_name=REPO, default_branch="main")
    return payload


def _review_payload(pr_payload: dict[str, Any], reviewer: str, commit: str) -> dict[str, Any]:
    payload = _sample("pull_request_review.submitted.json")
    payload["pull_request"] = copy.deepcopy(pr_payload["pull_request"])
    payload["review"].update(user=_user(reviewer), state="approved", commit_id=commit)
    payload.update(sender=_user(reviewer), installation={"id": 1}, repository=pr_payload["repository"])
    return payload


def _state(pr_payload: dict[str, Any], files: list[str], reviews: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "pull_request": pr_payload["pull_request"],
        "files": [{"filename": f, "status": "modified", "additions": 3, "deletions": 1} for f in files],
        "reviews": [{"id": i + 1, "user": _user(who), "state": "APPROVED", "commit_id": sha}
                    for i, (who, sha) in enumerate(reviews)],
        "commits": [],
        "permissions": {"maintainer-mia": "write", "lead-lee": "admin", "octocat": "write"},
    }


def scenarios() -> dict[str, Scenario]:
    agent, head = "copilot-swe-agent[bot]", _sha("agent-head")
    pr = _pr_payload(1, agent, head, "by an agent")
    old = _sha("older-commit")
    agent_pr = Scenario("agent-pr", [
        Step("An agent opens a pull request into main", "pull_request", pr,
             _state(pr, ["src/app.py"], []), 1, head),
        Step("A bot approves it (bots never count)", "pull_request_review",
             _review_payload(pr, "dependabot[bot]", head),
             _state(pr, ["src/app.py"], [("dependabot[bot]", head)]), 1, head),
        Step("A human approved an older commit (stale)", "pull_request_review",
             _review_payload(pr, "lead-lee", old),
             _state(pr, ["src/app.py"], [("dependabot[bot]", head), ("lead-lee", old)]), 1, head),
        Step("A human with write access approves the head", "pull_request_review",
             _review_payload(pr, "maintainer-mia", head),
             _state(pr, ["src/app.py"], [("dependabot[bot]", head), ("lead-lee", old),
                                         ("maintainer-mia", head)]), 1, head),
    ])
    human_head = _sha("human-head")
    human = _pr_payload(2, "octocat", human_head, "by a human")
    human_pr = Scenario("human-pr", [Step("A human opens a pull request", "pull_request", human,
                                          _state(human, ["README.md"], []), 2, human_head)])
    ci_head = _sha("ci-head")
    ci = _pr_payload(3, agent, ci_head, "touching CI")
    sensitive = Scenario("sensitive", [
        Step("An agent changes a workflow, one human approves (two are needed)", "pull_request_review",
             _review_payload(ci, "maintainer-mia", ci_head),
             _state(ci, [".github/workflows/ci.yml"], [("maintainer-mia", ci_head)]), 3, ci_head),
    ])
    chain_head = _sha("chain-head")
    chained = _pr_payload(4, agent, chain_head, "steered by a bot command")
    chain = Scenario("chain", [
        Step("A bot comments `/deploy` on an agent's pull request", "issue_comment",
             _comment_payload(chained, "release-bot[bot]", "/deploy production"),
             _state(chained, ["src/app.py"], []), 4, chain_head),
        Step("A maintainer repeats `/deploy`, taking responsibility", "issue_comment",
             _comment_payload(chained, "maintainer-mia", "/deploy production"),
             _state(chained, ["src/app.py"], []), 4, chain_head),
    ])
    return {s.name: s for s in (agent_pr, human_pr, sensitive, chain)}


def _comment_payload(pr_payload: dict[str, Any], author: str, body: str) -> dict[str, Any]:
    payload = _sample("issue_comment.created.json")
    payload["issue"].update(number=pr_payload["number"], pull_request={"url": "https://api.github.com/x"})
    payload["comment"].update(body=body, user=_user(author), id=abs(hash((author, body))) % 10**9)
    payload.update(sender=_user(author), installation={"id": 1}, repository=pr_payload["repository"])
    return payload


def _signed_post(url: str, secret: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(url, data=body, timeout=10,
                         headers={**headers, "Content-Type": "application/json", "X-Hub-Signature-256": signature})


def _await_status(base_url: str, sha: str, seen: int, timeout: float = 15.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        actions = requests.get(f"{base_url}/dev/actions", timeout=5).json()
        statuses = [a for a in actions if a["kind"] == "status" and a["details"]["sha"] == sha]
        if len(actions) > seen and statuses:
            return dict(statuses[0]["details"])
        time.sleep(0.2)  # polling a human-facing CLI, not synchronising a test
    return None


def replay(base_url: str, secret: str, which: str) -> int:
    chosen = list(scenarios().values()) if which == "all" else [scenarios()[which]]
    for scenario in chosen:
        print(f"== {scenario.name}")
        for step in scenario.steps:
            seed = json.dumps({"repo": REPO, "number": step.number, "sample": step.sample}).encode()
            _signed_post(f"{base_url}/dev/samples", secret, seed, {}).raise_for_status()
            seen = len(requests.get(f"{base_url}/dev/actions", timeout=5).json())
            resp = _signed_post(f"{base_url}/webhooks/github", secret, json.dumps(step.payload).encode(),
                                {"X-GitHub-Event": step.event, "X-GitHub-Delivery": str(uuid.uuid4())})
            status = _await_status(base_url, step.head_sha, seen) if resp.status_code == 202 else None
            if status:
                print(f"  {step.title}\n    -> {status['state']}: {status['description']}\n"
                      f"       {status['target_url']}")
            else:
                print(f"  {step.title}\n    -> HTTP {resp.status_code}, no new status (unchanged or failed)")
    return 0
