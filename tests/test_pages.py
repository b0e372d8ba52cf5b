"""The decision details page behind the `agentgate` status link, and the dev index page."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from markupsafe import escape

from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, PullRequestFacts, Review
from gatekeeper.core.verdict import Outcome, Reason, Verdict
from gatekeeper.policy import DEFAULT_POLICY
from gatekeeper.policy.preview import Flip, PolicyPreview, render_markdown
from gatekeeper.state import decisions
from gatekeeper.state.decisions import DecisionRecord
from gatekeeper.web import create_app
from gatekeeper.web.pages import render_markdown as page_markdown
from tests.policies import actor

HEAD, OLD = "eab0c84" + "1" * 33, "1f2e3d4" + "2" * 33
AGENT = actor("copilot-swe-agent[bot]", "Bot")
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def client(settings, redis_conn):
    return create_app(settings, redis_conn).test_client()


def pr_facts(**kw) -> PullRequestFacts:
    base = dict(repo="acme/api", number=12, author=AGENT, head_sha=HEAD, head_ref="copilot/fix", base_ref="main",
                base_sha=OLD, title="Fix the retry loop", labels=("ai",),
                changed_files=(ChangedFile("src/app.py", "modified", 3, 1), ChangedFile(".github/workflows/ci.yml")),
                requesters=("bob",))
    base.update(kw)
    return PullRequestFacts(**base)  # type: ignore[arg-type]


def save_pr(redis_conn, facts: PullRequestFacts, **extra) -> str:
    verdict = evaluate_pull_request(DEFAULT_POLICY, facts)
    return decisions.save(redis_conn, DecisionRecord(
        "github", facts.repo, f"pull request #{facts.number}", facts.head_sha, verdict.to_dict(), facts.to_dict(),
        ".agentgate.yml", {"event": "pull_request.opened", "sender": facts.author.login}, "2024-05-01T12:00:00+00:00",
        extra=extra))


def save_other(redis_conn, verdict: Verdict, facts: dict, subject: str = "merge group gh-readonly-queue/main/pr-12"):
    record = DecisionRecord("github", "acme/api", subject, HEAD, verdict.to_dict(), facts, "-")
    return decisions.save(redis_conn, record)


def section(html: str, heading: str) -> str:
    """The HTML from a heading to the next heading of the same or a higher level."""
    start = html.index(f">{heading}<")
    nxt = re.search(r"<h[12][ >]", html[start:])
    return html[start: start + nxt.start()] if nxt else html[start:]


def test_pending_pull_request_shows_what_would_unblock_it_first(client, redis_conn):
    """A pending verdict leads with repository, subject, outcome, description and the unblock steps."""
    html = client.get(f"/decisions/{save_pr(redis_conn, pr_facts())}").get_data(as_text=True)
    top = html[: html.index("Every reason")]
    assert "acme/api" in top and "pull request #12" in top
    assert '<span class="badge pending">pending</span>' in top
    unblock = section(html, "What would unblock it")
    assert "Needs 2 more approvals of eab0c84 from a human with write access" in unblock
    assert "Why it passes" not in html


def test_failure_unblock_falls_back_to_the_message_and_blocking_comes_first(client, redis_conn):
    """Each blocking reason's `unblock` is listed, its message when it has none; blocking precede the rest."""
    verdict = Verdict.of([
        Reason("queued-ok", Outcome.SUCCESS, "Queued pull request #14 passes"),
        Reason("queued-pr-blocked", Outcome.PENDING, "Queued pull request #12 is pending", "Approve #12's head"),
        Reason("forged", Outcome.FAILURE, "Someone else posted the agentgate status"),
    ])
    html = client.get(f"/decisions/{save_other(redis_conn, verdict, {'pull_requests': [12, 14]})}").get_data(
        as_text=True)
    unblock = section(html, "What would unblock it")
    assert "Someone else posted the agentgate status" in unblock and "Approve #12&#39;s head" in unblock
    assert unblock.index("Someone else") < unblock.index("Approve #12")  # most severe first
    reasons = section(html, "Every reason")
    assert reasons.index("Blocking (2)") < reasons.index("Informational (1)")
    for code in ("queued-ok", "queued-pr-blocked", "forged"):
        assert f"<code>{code}</code>" in reasons


def test_success_says_why_it_passes(client, redis_conn):
    """A passing verdict shows a short "Why it passes" and no unblock list."""
    facts = pr_facts(reviews=(Review(actor("alice", "User"), "APPROVED", HEAD, "write"),
                              Review(actor("carol", "User"), "APPROVED", HEAD, "write")))
    html = client.get(f"/decisions/{save_pr(redis_conn, facts)}").get_data(as_text=True)
    assert '<span class="badge success">success</span>' in html
    assert "Approved by alice, carol (2/2 required)" in section(html, "Why it passes")
    assert "What would unblock it" not in html


def test_pull_request_facts_in_human_form(client, redis_conn):
    """Author and kind, refs, short head SHA with the full one in title, files with sensitive ones flagged,
    reviews with their commit, requesters and labels come before the raw JSON."""
    facts = pr_facts(reviews=(
        Review(actor("renovate[bot]", "Bot"), "APPROVED", HEAD, "admin"),
        Review(actor("mia", "User"), "APPROVED", OLD, "write"),
        Review(actor("alice", "User"), "APPROVED", HEAD, "write")))
    html = client.get(f"/decisions/{save_pr(redis_conn, facts)}").get_data(as_text=True)
    human = html[html.index(">Facts used<"): html.index("Raw facts (JSON)")]
    assert "copilot-swe-agent[bot]" in human and '<span class="pill agent">agent</span>' in human
    assert "<code>main</code> ← <code>copilot/fix</code>" in human
    assert f'<code title="{HEAD}">eab0c84</code>' in human
    files = {m[1]: m[0] for m in re.findall(r'<li( class="flag")?>.*?<span class="mono">([^<]+)</span>', human, re.S)}
    assert files == {".github/workflows/ci.yml": ' class="flag"', "src/app.py": ""}
    assert '<span class="flagtag" title="sensitive path: .github/workflows/ci.yml">sensitive' in human
    rows = {login: human[human.index(f"<td>{login} "):].split("</tr>")[0]
            for login in ("renovate[bot]", "mia", "alice")}
    assert '<span class="pill bot">bot</span>' in rows["renovate[bot]"] and "admin access" in rows["renovate[bot]"]
    assert "older commit" in rows["mia"] and "current head" in rows["alice"]
    assert "counted" not in human.split("Reviews</th>")[1].split("</table>")[0]  # judged under Approvals only
    assert re.search(r'<th scope="row">Requested by</th><td>bob<', human)
    assert '<span class="pill">ai</span>' in human
    assert "<details>" in html and '"head_sha": "' + HEAD in html.replace("&#34;", '"')


def test_only_the_first_twenty_files_are_listed_reason_named_first(client, redis_conn):
    """At most 20 paths are listed; a path a reason names is listed even when it came last."""
    files = tuple(ChangedFile(f"src/m{i}.py") for i in range(30)) + (ChangedFile("CODEOWNERS"),)
    html = client.get(f"/decisions/{save_pr(redis_conn, pr_facts(changed_files=files))}").get_data(as_text=True)
    listed = re.findall(r'<span class="mono">([^<]+)</span>', html)
    assert len(listed) == 20 and listed[0] == "CODEOWNERS"
    assert "and 11 more" in html


def approval_rows(html: str) -> dict[str, str]:
    """The Approvals table's rows, by reviewer."""
    table = section(html, "Approvals")
    return {m[0]: m[1] for m in re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", table, re.S)}


def test_approvals_show_who_counted_and_why_others_did_not(client, redis_conn):
    """The Approvals section lists each requirement with the approvals counted for it, every counted
    reviewer, and every standing approval that did not count with the decision's reason."""
    facts = pr_facts(reviews=(
        Review(actor("renovate[bot]", "Bot"), "APPROVED", HEAD, "admin"),
        Review(actor("mia", "User"), "APPROVED", OLD, "write"),
        Review(actor("bob", "User"), "APPROVED", HEAD, "admin"),
        Review(actor("alice", "User"), "APPROVED", HEAD, "write")))
    html = client.get(f"/decisions/{save_pr(redis_conn, facts)}").get_data(as_text=True)
    approvals = section(html, "Approvals")
    assert "The approval requirement: 1 of 2 approvals counted (alice)" in approvals
    rows = approval_rows(html)
    assert set(rows) == {"renovate[bot]", "mia", "bob", "alice"}
    assert '<span class="yes">yes</span>' in rows["alice"]
    assert "counts towards the approval requirement" in rows["alice"]
    assert '<span class="no">no</span>' in rows["renovate[bot]"] and "only humans" in rows["renovate[bot]"]
    assert '<span class="no">no</span>' in rows["mia"]
    assert "mia approved 1f2e3d4, not the current head eab0c84" in rows["mia"]
    assert '<span class="no">no</span>' in rows["bob"] and "bob set the agent on this task" in rows["bob"]


def test_approvals_come_from_reason_data_never_from_messages_or_reviews(client, redis_conn):
    """The page shows what the reasons' data says: a message naming an approver counts nobody, a
    not-counted reviewer's `why_not` is shown as recorded, and the raw reviews are not judged again."""
    facts = pr_facts(reviews=(Review(actor("mia", "User"), "APPROVED", HEAD, "write"),))
    verdict = Verdict.of([
        Reason("needs-approval", Outcome.PENDING, "Approved by mallory (1/1 required)", "Needs 1 more approval",
               data={"approvers": [], "needed": 1, "head": HEAD, "approvers_from": ["carol"]}),
        Reason("approval-not-counted", Outcome.SUCCESS, "Approval not counted: mia is unlucky",
               data={"reviewer": "mia", "state": "APPROVED", "commit": HEAD, "counted": False,
                     "why_not": "mia is not among the reviewers this rule asks for", "submitted_at": None}),
    ])
    record = DecisionRecord("github", "acme/api", "pull request #12", HEAD, verdict.to_dict(), facts.to_dict(), "-")
    html = client.get(f"/decisions/{decisions.save(redis_conn, record)}").get_data(as_text=True)
    rows = approval_rows(html)
    assert set(rows) == {"mia"}  # mallory is only named in prose
    assert "mia is not among the reviewers this rule asks for" in rows["mia"] and "unlucky" not in rows["mia"]
    assert "The approval requirement: 0 of 1 approval counted" in section(html, "Approvals")
    assert "from carol" in section(html, "Approvals")


def test_every_sensitive_path_is_listed_five_among_thirty(client, redis_conn):
    """With 5 sensitive files among 30 (the reason's message names only 3), all 5 are in the file list,
    flagged sensitive, and shown as HTML rather than only in the raw JSON; the list stays capped."""
    sensitive = ["CODEOWNERS", ".github/workflows/a.yml", "deploy/key.pem", ".agentgate.yml", ".circleci/config.yml"]
    files = [ChangedFile(f"src/m{i}.py") for i in range(25)]
    for n, path in enumerate(sensitive):  # spread out, the last ones past the 20 shown
        files.insert(5 * n + 4, ChangedFile(path))
    facts = pr_facts(changed_files=tuple(files))
    record_id = save_pr(redis_conn, facts)
    stored = decisions.load(redis_conn, record_id)
    reason = next(r for r in stored.verdict["reasons"] if r["code"] == "sensitive-paths")
    assert "and 2 more" in reason["message"] and sorted(reason["data"]["paths"]) == sorted(sensitive)
    html = client.get(f"/decisions/{record_id}").get_data(as_text=True)
    human = html[html.index(">Facts used<"): html.index("<details>")]
    flagged = re.findall(r'<li class="flag">.*?<span class="mono">([^<]+)</span>', human, re.S)
    assert sorted(flagged) == sorted(sensitive)
    assert len(re.findall(r'<span class="mono">', human)) == 20 and "and 10 more" in human
    assert '<span class="flagtag">5 sensitive</span>' in human
    assert "All 5 sensitive paths are listed under Changed files" in section(html, "Every reason")


def test_sensitive_paths_past_the_stored_files_are_still_listed(client, redis_conn):
    """A record keeps only the first files; a sensitive path beyond them (known from the reason's data)
    is listed and flagged all the same, and the count is the real one."""
    files = tuple(ChangedFile(f"src/m{i}.py") for i in range(320)) + (ChangedFile(".github/workflows/late.yml"),)
    facts = pr_facts(changed_files=files)
    verdict = evaluate_pull_request(DEFAULT_POLICY, facts)
    stored_facts = facts.to_dict()
    stored_facts["changed_files_total"] = len(files)
    stored_facts["changed_files"] = stored_facts["changed_files"][:300]
    record = DecisionRecord("github", "acme/api", "pull request #12", HEAD, verdict.to_dict(), stored_facts, "-")
    html = client.get(f"/decisions/{decisions.save(redis_conn, record)}").get_data(as_text=True)
    human = html[html.index(">Facts used<"): html.index("<details>")]
    assert re.search(r'<li class="flag">.*?<span class="mono">\.github/workflows/late\.yml</span>', human, re.S)
    assert "<td>321" in human and "in the first 300 files" in human


def test_chain_findings_lifted_findings_and_policy_layers_are_shown(client, redis_conn):
    """A chain finding shows who acted from its data; lifted findings and the policy's layers are listed."""
    verdict = Verdict.of([Reason("chain-command", Outcome.FAILURE, "A bot asked to deploy", "Repeat it yourself",
                                 data={"actor": "helper[bot]", "actor_kind": "bot", "subject": "comment 7",
                                       "at": "2024-05-01T11:00:00+00:00"})])
    facts = pr_facts()
    record = DecisionRecord("github", "acme/api", "pull request #12", HEAD, verdict.to_dict(), facts.to_dict(),
                            ".agentgate.yml", extra={"policy_layers": ["preset:strict", ".agentgate.yml"],
                                                     "lifted": {"f1": "alice approved the head after it"}})
    html = client.get(f"/decisions/{decisions.save(redis_conn, record)}").get_data(as_text=True)
    reasons = section(html, "Every reason")
    assert "by helper[bot] (bot) · comment 7 · 2024-05-01T11:00:00+00:00" in reasons
    assert "Findings lifted (1)" in reasons and "alice approved the head after it" in reasons
    assert "(built from preset:strict, .agentgate.yml)" in html


def test_other_subjects_render_their_facts_as_a_table(client, redis_conn):
    """Facts of a merge group, deployment, push or status are a small dict shown as a key/value table."""
    verdict = Verdict.of([Reason("bot-deploy", Outcome.FAILURE, "A bot started the deployment", "Re-run it")])
    facts = {"environment": "production", "requester": "deploy-bot[bot]", "forced": False, "pull_requests": [3, 4]}
    html = client.get(f"/decisions/{save_other(redis_conn, verdict, facts, 'deployment to production')}").get_data(
        as_text=True)
    assert '<th scope="row">environment</th><td>production</td>' in html
    assert '<th scope="row">pull requests</th><td>3, 4</td>' in html
    assert '<th scope="row">forced</th><td>no</td>' in html


def test_hostile_strings_are_escaped(client, redis_conn):
    """A title, label, path, reviewer or reason (and its data) written by an agent is shown as text,
    never as markup."""
    facts = pr_facts(title=HOSTILE, labels=(HOSTILE,), changed_files=(ChangedFile(HOSTILE),), requesters=(HOSTILE,))
    decision_id = save_pr(redis_conn, facts)
    data_verdict = Verdict.of([
        Reason("sensitive-paths", Outcome.SUCCESS, HOSTILE, data={"paths": [HOSTILE], "needed": 2}),
        Reason("approval-not-counted", Outcome.SUCCESS, HOSTILE,
               data={"reviewer": HOSTILE, "state": "APPROVED", "why_not": HOSTILE, "submitted_at": HOSTILE}),
        Reason("rule:x", Outcome.PENDING, HOSTILE, HOSTILE,
               data={"approvers": [HOSTILE], "needed": 2, "approvers_from": [HOSTILE]}),
        Reason("chain-label", Outcome.FAILURE, HOSTILE, data={"actor": HOSTILE, "subject": HOSTILE})],
        approvals=(HOSTILE,))
    data_id = decisions.save(redis_conn, DecisionRecord(
        "github", "acme/api", "pull request #12", HEAD, data_verdict.to_dict(), facts.to_dict(), HOSTILE,
        extra={"lifted": {HOSTILE: HOSTILE}, "policy_layers": [HOSTILE]}))
    verdict = Verdict.of([Reason(HOSTILE, Outcome.FAILURE, HOSTILE, HOSTILE)])
    other_id = save_other(redis_conn, verdict, {HOSTILE: HOSTILE}, subject=HOSTILE)
    data_html = client.get(f"/decisions/{data_id}").get_data(as_text=True)
    escaped = str(escape(HOSTILE))
    assert escaped in section(data_html, "Approvals")  # the reviewer and why_not, from data, as text
    assert re.search(r'<li class="flag">.*?<span class="mono">' + re.escape(escaped), data_html, re.S)
    for page in (f"/decisions/{decision_id}", f"/decisions/{data_id}", f"/decisions/{other_id}", "/"):
        html = client.get(page).get_data(as_text=True)
        assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in client.get(f"/decisions/{decision_id}").get_data(as_text=True)


def test_policy_preview_is_rendered_as_html_with_titles_escaped(client, redis_conn):
    """The policy change preview is rendered (table, list, bold, code) and a `<script>` in a PR title is escaped."""
    markdown = render_markdown(PolicyPreview(
        flips=(Flip("acme/api", 9, "Agent <script>alert(1)</script> | `x`", Outcome.PENDING, Outcome.SUCCESS,
                    ("rule allow-docs lifts the approval requirement", "no approval")),),
        unchanged=3, widening=("rule allow-docs lifts the approval requirement",)))
    html = client.get(f"/decisions/{save_pr(redis_conn, pr_facts(), policy_preview_markdown=markdown)}").get_data(
        as_text=True)
    preview = section(html, "Policy change preview")
    assert "<strong>This change lets bots and agents do more:</strong>" in preview
    assert "<ul><li>rule allow-docs lifts the approval requirement</li></ul>" in preview
    assert '<th scope="col">with this policy</th>' in preview
    assert '<td data-label="PR">#9 Agent &lt;script&gt;alert(1)&lt;/script&gt; | <code>x</code></td>' in preview
    assert "rule allow-docs lifts the approval requirement<br>no approval" in preview
    assert '<span class="badge success">success</span>' in preview
    assert "<script>" not in html and "```" not in preview and "|---" not in preview


def test_markdown_subset_escapes_everything_it_does_not_render():
    """Only headings, lists, tables, `code`, **bold** and table <br> become markup; any other HTML is text."""
    out = str(page_markdown("# T <b>\n\n- **a** `<i>` <a href=javascript:x>\n\ntext & <br> more"))
    assert out == ("<h3>T &lt;b&gt;</h3>\n<ul><li><strong>a</strong> <code>&lt;i&gt;</code> "
                   "&lt;a href=javascript:x&gt;</li></ul>\n<p>text &amp; <br> more</p>")


def test_decision_pages_are_private_and_strictly_sandboxed(client, redis_conn):
    """Decision pages are never cached or indexed; HTML pages allow no script and no foreign resources."""
    resp = client.get(f"/decisions/{save_pr(redis_conn, pr_facts())}")
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert '<meta name="robots" content="noindex, nofollow">' in resp.get_data(as_text=True)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    nonce = re.search(r"style-src 'nonce-([^']+)'", csp).group(1)
    assert f'<style nonce="{nonce}">' in resp.get_data(as_text=True)
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Content-Security-Policy" in client.get("/").headers


def test_json_format_returns_the_record(client, redis_conn):
    """`?format=json` (or Accept: application/json) returns the stored record, also uncacheable."""
    decision_id = save_pr(redis_conn, pr_facts())
    for resp in (client.get(f"/decisions/{decision_id}?format=json"),
                 client.get(f"/decisions/{decision_id}", headers={"Accept": "application/json"})):
        assert resp.status_code == 200 and resp.mimetype == "application/json"
        assert resp.json["id"] == decision_id and resp.json["verdict"]["outcome"] == "pending"
        assert resp.json["facts"]["head_sha"] == HEAD
        assert resp.headers["Cache-Control"] == "private, no-store"


def test_unknown_or_malformed_ids_are_404(client, redis_conn):
    """An id that was never saved, or could not be one, is a 404."""
    assert client.get("/decisions/AAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert client.get("/decisions/short").status_code == 404
    assert client.get("/decisions/..%2F..%2Fetc").status_code == 404


def test_old_records_missing_fields_still_render(client, redis_conn):
    """A record with sparse facts (an older format) renders rather than failing."""
    facts = {"author": {"login": "someone"}, "head_sha": HEAD, "base_ref": "main"}
    decision_id = decisions.save(redis_conn, DecisionRecord("github", "acme/api", "pull request #1", HEAD,
                                                            {"outcome": "error"}, facts, "-"))
    resp = client.get(f"/decisions/{decision_id}")
    assert resp.status_code == 200 and "someone" in resp.get_data(as_text=True)


def test_old_records_without_reason_data_render_their_messages(client, redis_conn):
    """A record saved before reasons carried `data` (and the verdict `approvals`) still renders: every
    message is shown, nothing is inferred from the prose, and the page says the details are in the text."""
    old_verdict = {"outcome": "pending", "description": "Needs 1 more approval", "reasons": [
        {"code": "sensitive-paths", "outcome": "success", "message": "Changes sensitive paths: CODEOWNERS",
         "unblock": None},
        {"code": "needs-approval", "outcome": "pending", "message": "1/2 qualifying approvals of eab0c84 into main",
         "unblock": "Needs 1 more approval of eab0c84"},
        {"code": "approved", "outcome": "success", "message": "Approved by alice (1/1 required)", "unblock": None}]}
    files = (ChangedFile("CODEOWNERS"),) + tuple(ChangedFile(f"src/m{i}.py") for i in range(25))
    facts = pr_facts(changed_files=files).to_dict()
    decision_id = decisions.save(redis_conn, DecisionRecord("github", "acme/api", "pull request #12", HEAD,
                                                            old_verdict, facts, "-"))
    resp = client.get(f"/decisions/{decision_id}")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "Changes sensitive paths: CODEOWNERS" in section(html, "Every reason")
    assert "Needs 1 more approval of eab0c84" in section(html, "What would unblock it")
    approvals = section(html, "Approvals")
    assert "recorded before reasons carried structured data" in approvals
    assert "<tr><td>alice" not in approvals and 'class="flag"' not in html
    assert "none of them sensitive" not in html  # nothing is known about the files not shown


def test_dev_index_lists_recent_decisions(settings, redis_conn):
    """In `agentgate dev` (recording, not acting) the index page links recent decisions with their outcome."""
    decision_id = save_pr(redis_conn, replace(pr_facts(), number=5))
    html = create_app(replace(settings, dry_run=True), redis_conn).test_client().get("/").get_data(as_text=True)
    assert f'href="/decisions/{decision_id}"' in html and "acme/api pull request #5" in html


def test_production_index_lists_nothing_even_without_the_app_key(client, redis_conn):
    """A served web process (even one started without the App key) lists no decisions: a decision page
    is reached only through its link."""
    decision_id = save_pr(redis_conn, replace(pr_facts(), number=5))
    html = client.get("/").get_data(as_text=True)
    assert decision_id not in html and "pull request #5" not in html


# -- issue 11: verdict history, files and rules, the policy's commit, links back to the platform ---------

def save_at(redis_conn, facts: PullRequestFacts, at: str, verdict: Verdict | None = None, **extra) -> str:
    verdict = verdict or evaluate_pull_request(DEFAULT_POLICY, facts)
    return decisions.save(redis_conn, DecisionRecord(
        "github", facts.repo, f"pull request #{facts.number}", facts.head_sha, verdict.to_dict(), facts.to_dict(),
        ".agentgate.yml", {"event": "pull_request.synchronize"}, at, extra=extra))


def test_verdict_history_lists_the_pull_requests_verdicts_newest_first(client, redis_conn):
    """The details page lists every verdict on the same pull request, newest first, each linking to its
    page, this one marked; other pull requests' and other repositories' verdicts are not in it."""
    first = save_at(redis_conn, pr_facts(head_sha=OLD), "2024-05-01T10:00:00+00:00")
    second = save_at(redis_conn, pr_facts(), "2024-05-02T10:00:00+00:00")
    approved = pr_facts(reviews=(Review(actor("mia", "User"), "APPROVED", HEAD, "write"),),
                        changed_files=(ChangedFile("src/app.py"),))
    third = save_at(redis_conn, approved, "2024-05-03T10:00:00+00:00")
    other_pr = save_at(redis_conn, pr_facts(number=13), "2024-05-03T11:00:00+00:00")
    other_repo = save_at(redis_conn, pr_facts(repo="acme/web"), "2024-05-03T12:00:00+00:00")
    html = client.get(f"/decisions/{second}").get_data(as_text=True)
    history = section(html, "Verdict history")
    assert re.findall(r'href="/decisions/([^"]+)"', history) == [third, second, first]
    assert other_pr not in history and other_repo not in history
    assert re.search(r'<tr class="current" aria-current="page">\s*<td data-label="decided"><strong>'
                     rf'<a href="/decisions/{second}"', history)
    for outcome in ("success", "pending"):
        assert f'<span class="badge {outcome}">{outcome}</span>' in history
    assert "<code>1f2e3d4</code>" in history and "<code>pull_request.synchronize</code>" in history


def test_saving_a_record_again_adds_no_history(client, redis_conn):
    """A record saved again (the policy preview added to it) is the same verdict, not another one."""
    decision_id = save_at(redis_conn, pr_facts(), "2024-05-02T10:00:00+00:00")
    record = decisions.load(redis_conn, decision_id)
    record.extra["policy_preview_markdown"] = "## Policy change preview\n\nnothing flips"
    decisions.save(redis_conn, record)
    assert [r.id for r in decisions.history(redis_conn, "github", "acme/api", 12)] == [decision_id]


def test_other_subjects_have_no_history_section(client, redis_conn):
    """A merge group or deployment decision is not a pull request's: no verdict history is read or shown."""
    html = client.get(f"/decisions/{save_other(redis_conn, Verdict.of([]), {'pull_requests': [12]})}").get_data(
        as_text=True)
    assert "Verdict history" not in html


def test_files_are_listed_under_the_rules_they_matched(client, redis_conn):
    """Each reason that carries matched paths lists them under its rule; a policy rule that applied
    without recording paths says so instead of looking like it matched nothing."""
    verdict = Verdict.of([
        Reason("sensitive-paths", Outcome.SUCCESS, "Changes sensitive paths: CODEOWNERS",
               data={"paths": ["CODEOWNERS", ".github/workflows/ci.yml"], "needed": 2}),
        Reason("rule:no-migrations", Outcome.FAILURE, "Agents may not change migrations", "Split it",
               data={"paths": ["db/migrations/0042.sql"]}),
        Reason("rule:title-wip", Outcome.PENDING, "WIP pull requests wait", "Drop WIP from the title"),
        Reason("automated-change", Outcome.SUCCESS, "Opened by copilot"),
    ])
    html = client.get(f"/decisions/{save_at(redis_conn, pr_facts(), '2024-05-02T10:00:00+00:00', verdict)}").get_data(
        as_text=True)
    matches = section(html, "Files and the rules they matched")
    assert re.search(r"sensitive paths</strong>.*?\(so 2 approvals are needed\).*?<code>CODEOWNERS</code>.*?"
                     r"<code>.github/workflows/ci.yml</code>", matches, re.S)
    assert re.search(r"rule no-migrations</strong>.*?<code>db/migrations/0042.sql</code>", matches, re.S)
    assert re.search(r"rule title-wip</strong>.*?does not list which files", matches, re.S)
    assert "automated-change" not in matches


def test_the_policy_file_and_commit_link_to_that_version(client, redis_conn):
    """The policy is named with the commit it was read at, linking to the file at that commit on the
    platform; without a recorded commit the page says which branch's head it was read at."""
    pinned = save_at(redis_conn, pr_facts(), "2024-05-02T10:00:00+00:00", policy_sha="9c0ffee" + "3" * 33,
                     policy_layers=["preset:strict", ".agentgate.yml"])
    html = client.get(f"/decisions/{pinned}").get_data(as_text=True)
    policy = html[html.index("<dt>Policy</dt>"): html.index("</dd>", html.index("<dt>Policy</dt>"))]
    sha = "9c0ffee" + "3" * 33
    web = "https://github.com/acme/api"
    assert f'<a href="{web}/blob/{sha}/.agentgate.yml" rel="noreferrer"><code>.agentgate.yml</code></a>' in policy
    assert f'<a href="{web}/commit/{sha}" rel="noreferrer"><code title="{sha}">9c0ffee</code></a>' in policy
    assert "built from preset:strict, .agentgate.yml" in policy
    unpinned = client.get(f"/decisions/{save_pr(redis_conn, pr_facts())}").get_data(as_text=True)
    assert "on <code>main</code> at its head when decided" in unpinned and "/blob/" not in unpinned
    bogus = save_at(redis_conn, pr_facts(number=14), "2024-05-02T10:00:00+00:00", policy_sha="javascript:alert(1)")
    assert "javascript:" not in client.get(f"/decisions/{bogus}").get_data(as_text=True)


def test_links_go_to_the_platform_only(settings, redis_conn):
    """Links back to the pull request and commit use the platform's configured web address (github.com,
    GHES, the GitLab instance) and validated names; a name that could leave the project links nowhere."""
    ghes = create_app(replace(settings, github_api_url="https://ghe.acme.test/api/v3"), redis_conn).test_client()
    html = ghes.get(f"/decisions/{save_pr(redis_conn, pr_facts())}").get_data(as_text=True)
    assert 'href="https://ghe.acme.test/acme/api/pull/12"' in html
    assert f'href="https://ghe.acme.test/acme/api/commit/{HEAD}"' in html
    gitlab = create_app(replace(settings, gitlab_url="https://gitlab.acme.test/"), redis_conn).test_client()
    facts = pr_facts(repo="acme/platform/api")
    record = DecisionRecord("gitlab", facts.repo, "pull request #12", HEAD,
                            evaluate_pull_request(DEFAULT_POLICY, facts).to_dict(), facts.to_dict(), ".agentgate.yml",
                            extra={"policy_sha": OLD})
    html = gitlab.get(f"/decisions/{decisions.save(redis_conn, record)}").get_data(as_text=True)
    assert 'href="https://gitlab.acme.test/acme/platform/api/-/merge_requests/12"' in html
    assert f'href="https://gitlab.acme.test/acme/platform/api/-/blob/{OLD}/.agentgate.yml"' in html
    plain_api = create_app(replace(settings, github_api_url="http://127.0.0.1:9/api/v3"), redis_conn).test_client()
    assert not re.search(r'<a href="https?:', plain_api.get(f"/decisions/{save_pr(redis_conn, pr_facts())}").get_data(
        as_text=True))
    github = create_app(settings, redis_conn).test_client()
    for repo in ("../evil", "acme/..", "acme/api/extra", "acme/a b", "//evil.example/x"):
        html = github.get(f"/decisions/{save_pr(redis_conn, pr_facts(repo=repo))}").get_data(as_text=True)
        assert "https://github.com/" not in html, repo


def test_details_page_fits_a_phone(client, redis_conn):
    """The page declares a device-width viewport and stacks its tables below 600 px (the browser test
    measures 375 px)."""
    html = client.get(f"/decisions/{save_pr(redis_conn, pr_facts())}").get_data(as_text=True)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "@media (max-width:600px)" in html and ".stack td{display:block" in html.replace(",.stack td", ".stack td")
