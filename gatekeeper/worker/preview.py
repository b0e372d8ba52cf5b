"""The policy change preview: a pull request changing `.agentgate.yml` is judged by the base policy,
and its comment and details page show what the proposed file would do to the open pull requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatekeeper.forges.port import Forge, ForgeError
from gatekeeper.policy import POLICY_PATH
from gatekeeper.policy.preview import preview, render_markdown
from gatekeeper.state import decisions, keys
from gatekeeper.worker import actions, gather
from gatekeeper.worker.runtime import Runtime

if TYPE_CHECKING:
    from gatekeeper.worker.pipeline import Assessment

PREVIEW_OPEN_PULLS = 30


def preview_policy_change(rt: Runtime, forge: Forge, result: Assessment, decision_id: str,
                          installation: int | None) -> None:
    """Once per head and base; at most one per PR every few minutes, however often it is pushed (a head
    pushed meanwhile is previewed when the interval is over)."""
    conn, pr = rt.conn, result.pr
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
        proposed_text = forge.get_file(POLICY_PATH, pr.head_sha)
        proposed = gather.policy_from_text(conn, forge, proposed_text, f"{POLICY_PATH} at {pr.head_sha[:7]}")
        others = [p for p in forge.list_open_pulls(PREVIEW_OPEN_PULLS) if p.number != pr.number]
        facts = []
        for other in others:
            # Gathered under the base policy's identities; the preview compares verdicts only.
            try:
                facts.append(gather.pull_request_facts(conn, forge, other, result.policy, with_requesters=False))
            except gather.HeadMoved:
                continue  # pushed to while we read it: its own evaluation follows
    except ForgeError:
        conn.delete(once)  # try again on the next evaluation
        raise
    markdown = render_markdown(preview(result.policy, proposed, facts)).replace(
        "\n\n", f"\n\nThe proposed `{POLICY_PATH}` at `{pr.head_sha[:7]}`, against {len(facts)} open "
                f"pull request(s):\n\n", 1)
    record = decisions.load(conn, decision_id)
    if record is not None:
        record.extra["policy_preview_markdown"] = markdown
        decisions.save(conn, record)
    actions.sync_comment(conn, forge, pr.number, "policy-preview", markdown)
