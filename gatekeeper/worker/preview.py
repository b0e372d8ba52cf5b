"""The policy change preview: a pull request changing `.agentgate.yml` is judged by the base policy,
and its comment and details page show what the proposed file would do to the open pull requests.

A preview re-reads other pull requests, so it is bounded like untrusted work: it runs only when a
human with write access opened the pull request (anyone can open one, and a bot or agent proposing
a policy is judged like any other change), it re-evaluates at most PREVIEW_OTHER_PULLS of the open
pull requests (those whose facts are already cached first), and it makes at most PREVIEW_READS
platform reads, its listing and the proposed file included. What it left out, it says."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import redis

from gatekeeper.core.facts import ActorKind, permission_at_least
from gatekeeper.forges.port import Forge, ForgeError, PullRequest
from gatekeeper.policy import POLICY_PATH
from gatekeeper.policy.preview import preview, render_markdown
from gatekeeper.state import decisions, keys
from gatekeeper.worker import actions, gather
from gatekeeper.worker.runtime import Runtime

if TYPE_CHECKING:
    from gatekeeper.worker.pipeline import Assessment

PREVIEW_MIN_PERMISSION = "write"  # of the pull request's author
PREVIEW_LISTED_PULLS = 30  # one page of the open pull requests, to know what is left out
PREVIEW_OTHER_PULLS = 10  # re-evaluated under both policies
# Platform reads one preview may make: the proposed file (and the org files it extends), the listing,
# and each re-evaluated pull request's reviews (plus its files and commits when not cached).
PREVIEW_READS = 40


class ReadBudgetSpent(Exception):
    """The preview made all the platform reads it may make. Not a ForgeError: nothing is retried."""


class _Reads:
    """A forge for reading only, that counts its calls and refuses the one past `limit`."""

    def __init__(self, forge: Forge, limit: int) -> None:
        self._forge, self.limit, self.made = forge, limit, 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._forge, name)
        if not callable(value) or name == "is_own":  # attributes, and what is answered without a call
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.made >= self.limit:
                raise ReadBudgetSpent(f"{self.limit} platform reads")
            self.made += 1
            return cast(Callable[..., Any], value)(*args, **kwargs)

        return counted


def preview_policy_change(rt: Runtime, forge: Forge, result: Assessment, decision_id: str,
                          installation: int | None) -> None:
    """Once per head and base; at most one per PR every few minutes, however often it is pushed (a head
    pushed meanwhile is previewed when the interval is over)."""
    conn, pr = rt.conn, result.pr
    reads = _Reads(forge, PREVIEW_READS)
    budgeted = cast(Forge, reads)
    refused = _refused(conn, budgeted, result)
    if refused is not None:
        _record(conn, decision_id, f"### Policy change preview\n\nNo preview: {refused}.\n")
        return
    once = keys.preview_once(forge.platform, forge.repo, pr.number, pr.head_sha, pr.base_sha)
    if not conn.set(once, "1", nx=True, ex=keys.PREVIEW_TTL):
        return
    if not conn.set(keys.preview_recent(forge.platform, forge.repo, pr.number), "1", nx=True,
                    ex=keys.PREVIEW_INTERVAL):
        conn.delete(once)
        rt.queue.enqueue_evaluation(forge.platform, forge.repo, pr.number, installation, "scheduled",
                                    f"preview-{pr.number}-{pr.head_sha[:12]}", delay_seconds=keys.PREVIEW_INTERVAL + 1)
        return
    try:
        proposed_text = budgeted.get_file(POLICY_PATH, pr.head_sha)
        proposed = gather.policy_from_text(conn, budgeted, proposed_text, f"{POLICY_PATH} at {pr.head_sha[:7]}")
        page = budgeted.list_open_pulls(PREVIEW_LISTED_PULLS)
        listed = [p for p in page if p.number != pr.number]
        chosen, left_out = _choose(conn, forge, listed)
        facts = []
        for i, other in enumerate(chosen):
            # Gathered under the base policy's identities; the preview compares verdicts only.
            try:
                facts.append(gather.pull_request_facts(conn, budgeted, other, result.policy, with_requesters=False))
            except gather.HeadMoved:
                left_out.append(other.number)  # pushed to while we read it: its own evaluation follows
            except ReadBudgetSpent:
                left_out[:0] = [p.number for p in chosen[i:]]
                break
    except ReadBudgetSpent:
        # Not even the proposed policy and the listing fit: a policy naming many org: files, say.
        _record(conn, decision_id, "### Policy change preview\n\nNo preview: the proposed policy and the list of "
                                   f"open pull requests could not be read within {PREVIEW_READS} platform reads.\n")
        return
    except ForgeError:
        conn.delete(once)  # try again on the next evaluation
        raise
    why = (f"a preview re-evaluates at most {PREVIEW_OTHER_PULLS} other open pull requests, those agentgate "
           f"has read recently first, within {PREVIEW_READS} platform reads")
    if len(page) >= PREVIEW_LISTED_PULLS:  # a full page: there may be more
        why += f"; only the {PREVIEW_LISTED_PULLS} most recently updated open pull requests were listed"
    markdown = render_markdown(preview(result.policy, proposed, facts, left_out=left_out, left_out_why=why)).replace(
        "\n\n", f"\n\nThe proposed `{POLICY_PATH}` at `{pr.head_sha[:7]}`, against {len(facts)} open "
                f"pull request(s):\n\n", 1)
    _record(conn, decision_id, markdown)
    actions.sync_comment(conn, forge, pr.number, "policy-preview", markdown)


def _refused(conn: redis.Redis, forge: Forge, result: Assessment) -> str | None:
    """Why this pull request gets no preview, if it does not: only a human with write access may make
    agentgate read the repository's other pull requests on their behalf."""
    author = result.facts.author
    if author.kind.is_automated:
        kind = "an agent" if author.kind is ActorKind.AGENT else "a bot"
        return (f"{author.login} is {kind}; a preview of what the proposed policy does to open pull requests "
                f"runs only for pull requests opened by a human with {PREVIEW_MIN_PERMISSION} access")
    level = gather.permission(conn, forge, author.login)
    if not permission_at_least(level, PREVIEW_MIN_PERMISSION):
        return (f"{author.login} has {level} access; a preview of what the proposed policy does to open pull "
                f"requests runs only for pull requests opened by a human with {PREVIEW_MIN_PERMISSION} access")
    return None


def _choose(conn: redis.Redis, forge: Forge, listed: list[PullRequest]) -> tuple[list[PullRequest], list[int]]:
    """At most PREVIEW_OTHER_PULLS pull requests, those whose files and commits at their head are
    cached first (they cost one read each), then the most recently updated; and the numbers left out."""
    pipe = conn.pipeline(transaction=False)
    for p in listed:
        pipe.exists(keys.commit_files(forge.platform, forge.repo, p.number, p.head_sha),
                    keys.commit_list(forge.platform, forge.repo, p.number, p.head_sha))
    cached = {p.number: found == 2 for p, found in zip(listed, pipe.execute(), strict=True)}
    ranked = sorted(listed, key=lambda p: not cached[p.number])  # stable: listing order within each group
    chosen = ranked[:PREVIEW_OTHER_PULLS]
    return chosen, [p.number for p in ranked[PREVIEW_OTHER_PULLS:]]


def _record(conn: redis.Redis, decision_id: str, markdown: str) -> None:
    record = decisions.load(conn, decision_id)
    if record is not None:
        record.extra["policy_preview_markdown"] = markdown
        decisions.save(conn, record)
