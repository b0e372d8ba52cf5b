"""Chain rules: bots and agents must not steer other bots through comments, labels, runs or deployments."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.core.chains import (
    MAX_BODY_CHARS,
    UNSCANNED,
    ChainFinding,
    CommandHit,
    chain_reasons,
    find_commands,
    is_tampering,
    judge_comment,
    judge_deployment,
    judge_label,
    judge_workflow_run,
)
from gatekeeper.core.verdict import Outcome, Reason
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.model import DEFAULT_POLICY, ChainAllow, ChainPolicy
from tests.policies import actor

AGENT = actor("copilot-swe-agent[bot]", "Bot")
BOT = actor("ci-helper[bot]", "Bot")
DEPENDABOT = actor("dependabot[bot]", "Bot")
HUMAN = actor("octocat", "User")
CHAINS = DEFAULT_POLICY.chains
SRC = ["src/app.py"]

LOCKFILES = GlobSet(("**/package-lock.json", "**/yarn.lock", "**/poetry.lock"))
DEPENDABOT_AUTOMERGE = ChainAllow(actor=GlobSet(("dependabot[bot]",)), labels=("automerge",), only_paths=LOCKFILES)


def with_allow(*entries: ChainAllow):
    return replace(DEFAULT_POLICY, chains=replace(CHAINS, allow=entries))


def verbs(body: str) -> list[str]:
    return [hit.command for hit in find_commands(body, CHAINS)]


# --- comments ------------------------------------------------------------------------------------------


def test_bot_deploy_comment_fails_with_unblock():
    """A bot commenting `/deploy` is a FAILURE finding that says a human must repeat it."""
    [finding] = judge_comment(DEFAULT_POLICY, BOT, "Tests passed.\n/deploy production", SRC)
    assert finding == ChainFinding(
        "command", BOT, "/deploy",
        Reason("chain-command", Outcome.FAILURE,
               "ci-helper[bot] (a bot) commented `/deploy`, a command another bot may act on",
               "A human with write access comments `/deploy` to confirm it, or approves the current head"),
        "deploy")


def test_agent_commands_in_mention_and_bors_form():
    """`@somebot merge` and `bors r+` are commands too; the verb drops the addressee."""
    assert verbs("@somebot merge") == ["merge"]
    assert verbs("bors r+") == ["r+"]
    assert verbs("@dependabot squash and merge") == ["squash and merge"]
    findings = judge_comment(DEFAULT_POLICY, AGENT, "@somebot merge\nbors r+", SRC)
    assert [(f.kind, f.subject, f.key) for f in findings] == [("command", "@somebot merge", "merge"),
                                                              ("command", "bors r+", "r+")]
    assert all(f.reason.outcome is Outcome.FAILURE for f in findings)


def test_commands_are_case_insensitive_and_may_be_indented():
    """Commands match case-insensitively, after leading whitespace (bots that trim lines read them)."""
    assert verbs("   /DEPLOY") == ["deploy"]


def test_quoted_command_is_not_a_command():
    """`> /merge` is a quote of someone's command, not a command."""
    assert judge_comment(DEFAULT_POLICY, BOT, "> /merge\nDone, as requested.", SRC) == []


def test_command_in_code_is_not_a_command():
    """A command in inline code or in a closed fenced code block is documentation, not a command."""
    body = "Run `/merge` when ready, or:\n```\n/merge\n```\n~~~\n@somebot merge\n~~~"
    assert judge_comment(DEFAULT_POLICY, BOT, body, SRC) == []


def test_command_in_unclosed_fence_or_html_comment_is_a_command():
    """An unclosed fence and an HTML comment hide nothing from a bot that reads the raw body."""
    assert verbs("```\n/merge") == ["merge"]
    assert verbs("All good! <!--\n/deploy\n-->") == ["deploy"]


def test_zero_width_command_is_found_and_marked_disguised():
    """`/de\\u200bploy` is `/deploy`; the finding says it was written with hidden characters."""
    [hit] = find_commands("/de\u200bploy", CHAINS)
    assert (hit.command, hit.disguised) == ("deploy", True)
    [finding] = judge_comment(DEFAULT_POLICY, AGENT, "/de\u200bploy", SRC)
    assert "hidden or look-alike characters" in finding.reason.message


def test_homoglyph_commands_are_found():
    """Cyrillic look-alikes (`/dеploy`, `/ԁерӏоу`) and other slashes (`⁄deploy`) are `/deploy`."""
    assert verbs("/dеploy") == ["deploy"]
    assert verbs("/ԁерӏоу") == ["deploy"]
    assert verbs("⁄deploy") == ["deploy"]


def test_fullwidth_slash_command_is_found():
    """A fullwidth `／deploy` folds (NFKC) to `/deploy`."""
    assert verbs("／deploy") == ["deploy"]
    assert verbs("／ｍｅｒｇｅ") == ["merge"]


def test_bidi_override_command_is_found():
    """Bidi overrides and isolates around or inside a command are dropped before matching."""
    assert verbs("\u202e/deploy\u202c") == ["deploy"]
    assert verbs("\u2067/me\u2066rge\u2069") == ["merge"]


def test_line_separators_start_commands():
    """A command after U+2028 starts a line for a bot that splits there."""
    assert verbs("See the report.\u2028/deploy") == ["deploy"]


def test_human_deploy_comment_is_no_finding():
    """Humans' commands are the humans in the loop: no finding."""
    assert judge_comment(DEFAULT_POLICY, HUMAN, "/deploy", SRC) == []


def test_plain_prose_is_not_a_command():
    """A comment that mentions deploying without a command form is no finding."""
    assert judge_comment(DEFAULT_POLICY, BOT, "I will not deploy this. See /docs/deploy.md", SRC) == []


def test_one_finding_per_command_verb():
    """The same command twice in a comment is one finding."""
    assert len(judge_comment(DEFAULT_POLICY, BOT, "/deploy\n/deploy", SRC)) == 1


def test_allowed_command_by_login_glob():
    """An allow entry permits a command when the login matches and the verb (or "*") is listed."""
    policy = with_allow(ChainAllow(actor=GlobSet(("ci-*[bot]",)), commands=("/retest",)))
    assert judge_comment(policy, BOT, "/retest", SRC) == []
    assert [f.key for f in judge_comment(policy, BOT, "/retest\n/deploy", SRC)] == ["deploy"]
    assert [f.key for f in judge_comment(policy, AGENT, "/retest", SRC)] == ["retest"]


def test_allowed_command_with_only_paths_needs_every_path():
    """With only_paths, every changed path must match; no paths (or an incomplete list) permits nothing."""
    policy = with_allow(ChainAllow(actor=GlobSet(("ci-helper[bot]",)), commands=("*",), only_paths=LOCKFILES))
    assert judge_comment(policy, BOT, "/merge", ["package-lock.json"]) == []
    assert judge_comment(policy, BOT, "/merge", ["package-lock.json", "src/app.py"]) != []
    assert judge_comment(policy, BOT, "/merge", []) != []
    assert judge_comment(policy, BOT, "/merge", ["package-lock.json"], paths_complete=False) != []


def test_oversized_comment_is_unscanned_finding():
    """Text past 64 KiB is not scanned; in a bot's comment that is a finding (fail closed)."""
    body = "ok\n" + "x" * MAX_BODY_CHARS
    assert find_commands(body, CHAINS)[-1].command == UNSCANNED
    [finding] = judge_comment(DEFAULT_POLICY, BOT, body, SRC)
    assert finding.reason.code == "chain-comment-unscanned"
    assert judge_comment(DEFAULT_POLICY, HUMAN, body, SRC) == []


def test_catastrophic_pattern_cannot_hang_the_worker():
    """A configured pattern with catastrophic backtracking times out on a line and counts as unscanned;
    a bot's comment with such a line is a finding."""
    policy = replace(DEFAULT_POLICY, chains=ChainPolicy(command_patterns=(r"^(a|aa)+$",)))
    [hit] = find_commands("a" * 60 + "b", policy.chains)
    assert hit.command == UNSCANNED
    assert [f.reason.code for f in judge_comment(policy, BOT, "a" * 60 + "b", SRC)] == ["chain-comment-unscanned"]


def test_custom_pattern_verb_group():
    """A pattern's named group `verb` names the command."""
    chains = ChainPolicy(command_patterns=(r"^!ship\s+it\s+to\s+(?P<verb>\w+)",))
    assert [h.command for h in find_commands("!ship it to prod", chains)] == ["prod"]


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=20), st.characters(categories=["Cf"])),
                min_size=1, max_size=10),
       st.sampled_from(["/deploy", "@somebot merge", "bors r+", "/ok-to-test"]))
def test_format_characters_never_hide_a_command(insertions, command):
    """Inserting any zero-width or format characters anywhere into a detected command never hides it."""
    expected = verbs(command)
    assert expected
    text = list(command)
    for position, char in insertions:
        text.insert(min(position, len(text)), char)
    assert verbs("".join(text)) == expected


# --- labels --------------------------------------------------------------------------------------------


def test_bot_automerge_label_fails():
    """A bot applying `automerge` is a FAILURE finding, and the message says agentgate removes it."""
    [finding] = judge_label(DEFAULT_POLICY, BOT, "automerge", SRC)
    assert (finding.kind, finding.subject, finding.key) == ("label", "automerge", "automerge")
    assert finding.reason == Reason(
        "chain-label", Outcome.FAILURE, "ci-helper[bot] (a bot) applied the trigger label `automerge` "
        "(agentgate removes it)",
        "A human with write access re-applies `automerge` to confirm it, or approves the current head")


def test_human_automerge_label_is_no_finding():
    """A human applying a trigger label is the human in the loop."""
    assert judge_label(DEFAULT_POLICY, HUMAN, "automerge", SRC) == []


def test_disguised_trigger_labels_still_match():
    """Labels compare normalised and casefolded: zero-width, fullwidth and separator variants match."""
    for label in ("Auto\u200bmerge", "ＡＵＴＯＭＥＲＧＥ", "auto_merge", "OK To Test", "dеploy"):
        assert judge_label(DEFAULT_POLICY, AGENT, label, SRC), label


def test_other_labels_are_no_finding():
    """Labels that trigger nothing are no finding, whoever applies them."""
    assert judge_label(DEFAULT_POLICY, AGENT, "documentation", SRC) == []
    assert judge_label(DEFAULT_POLICY, AGENT, "\u200b", SRC) == []


def test_dependabot_automerge_on_lockfile_only_pr_is_allowed():
    """dependabot may apply automerge when every changed path is a lockfile."""
    policy = with_allow(DEPENDABOT_AUTOMERGE)
    assert judge_label(policy, DEPENDABOT, "automerge", ["package-lock.json", "web/yarn.lock"]) == []


def test_dependabot_automerge_touching_src_is_a_finding():
    """The same label on a pull request that also changes src/ is a chain again."""
    policy = with_allow(DEPENDABOT_AUTOMERGE)
    assert judge_label(policy, DEPENDABOT, "automerge", ["package-lock.json", "src/app.py"]) != []


def test_allow_entry_is_for_its_actor_and_labels_only():
    """An entry for dependabot[bot] permits neither another bot nor another label; `[bot]` is literal."""
    policy = with_allow(DEPENDABOT_AUTOMERGE)
    assert judge_label(policy, BOT, "automerge", ["package-lock.json"]) != []
    assert judge_label(policy, DEPENDABOT, "deploy", ["package-lock.json"]) != []
    impostor = actor("dependabott", bots=("dependabott",))
    assert judge_label(policy, impostor, "automerge", ["package-lock.json"]) != []


def test_labels_stay_when_removal_is_off():
    """With remove_bot_labels off the finding stands, and its message does not promise a removal."""
    policy = replace(DEFAULT_POLICY, chains=replace(CHAINS, remove_bot_labels=False))
    [finding] = judge_label(policy, BOT, "deploy", SRC)
    assert "removes" not in finding.reason.message


# --- workflow runs -------------------------------------------------------------------------------------


def run(event: str, triggering=AGENT, actor=AGENT, **kw) -> list[ChainFinding]:
    return judge_workflow_run(DEFAULT_POLICY, triggering, actor, event, "Deploy", ".github/workflows/deploy.yml",
                              42, **kw)


def test_agent_workflow_dispatch_is_a_finding():
    """An agent dispatching a workflow picked the workflow and its inputs: a FAILURE finding."""
    [finding] = run("workflow_dispatch")
    assert finding == ChainFinding(
        "workflow_run", AGENT, "workflow Deploy (run 42)",
        Reason("chain-workflow-run", Outcome.FAILURE,
               "copilot-swe-agent[bot] (an agent) triggered workflow Deploy (run 42) through `workflow_dispatch`, "
               "which runs with the repository's secrets",
               "A human with write access re-runs workflow Deploy (run 42) or approves the current head"),
        ".github/workflows/deploy.yml")


def test_privileged_events_count_and_unknown_ones_too():
    """repository_dispatch, issue_comment, pull_request_target, workflow_run and events nobody listed count."""
    for event in ("repository_dispatch", "issue_comment", "pull_request_target", "workflow_run", "release",
                  "some_future_event"):
        assert run(event), event


def test_ordinary_ci_of_an_agent_pr_is_not_a_chain():
    """pull_request (and review) runs are CI of the agent's own code: not a chain."""
    for event in ("pull_request", "pull_request_review", "merge_group", "schedule", "dynamic"):
        assert run(event) == [], event


def test_ci_of_a_workflow_the_pr_changes_is_a_finding():
    """A pull_request run of a workflow file the agent's PR changes ran the agent's own workflow."""
    [finding] = run("pull_request", changed_paths=[".github/workflows/deploy.yml"])
    assert "which its own pull request changes" in finding.reason.message


def test_push_runs_count_on_protected_or_unknown_branches():
    """A push run on the agent's own branch is CI; on a protected or default branch, or unknown, it counts."""
    assert run("push", head_branch="copilot/fix-1", default_branch="main") == []
    assert run("push", head_branch="main", default_branch="main")
    assert run("push", head_branch="develop", default_branch="develop")
    assert run("push", head_branch="release/2.0", default_branch="main")
    assert run("push")


def test_human_triggered_or_rerun_is_no_finding():
    """A human's run, or a human re-running an agent's run (triggering_actor), is the human's action."""
    assert run("workflow_dispatch", triggering=HUMAN, actor=HUMAN) == []
    assert run("workflow_dispatch", triggering=HUMAN, actor=AGENT) == []
    assert run("workflow_dispatch", triggering=None, actor=AGENT)


# --- deployments ---------------------------------------------------------------------------------------


def test_production_deploy_of_unapproved_agent_change_is_rejected():
    """A protected environment rejects an agent's change whose PR verdict is not success."""
    state, reason = judge_deployment(DEFAULT_POLICY, "production", HUMAN, Outcome.PENDING, agent_involved=True)
    assert state == "rejected"
    assert reason == Reason(
        "deployment-unapproved-change", Outcome.FAILURE,
        "Deployment to protected environment production ships an agent's change whose agentgate verdict is pending",
        "Get the pull request to agentgate success (human approval of its head), then re-run the deployment to "
        "production")


def test_production_deploy_of_approved_agent_change_is_approved():
    """Once the agent's PR verdict is success with a human's counting approval, a human-started
    deployment goes ahead."""
    state, reason = judge_deployment(DEFAULT_POLICY, "production", HUMAN, Outcome.SUCCESS, agent_involved=True,
                                     human_approved=True)
    assert (state, reason.outcome) == ("approved", Outcome.SUCCESS)


def test_production_deploy_of_an_agent_change_nobody_approved_is_rejected():
    """A passing verdict that needed no approval (the PR went into an unguarded branch) is not enough:
    the deployment of an agent's change rests on a human's approval of it."""
    state, reason = judge_deployment(DEFAULT_POLICY, "production", HUMAN, Outcome.SUCCESS, agent_involved=True)
    assert (state, reason.code) == ("rejected", "deployment-unapproved-change")


def test_unknown_verdict_is_rejected():
    """A verdict that could not be evaluated (None) fails closed."""
    state, reason = judge_deployment(DEFAULT_POLICY, "production", HUMAN, None, agent_involved=True)
    assert state == "rejected"
    assert "could not be evaluated" in reason.message


def test_deploy_started_by_an_agent_is_rejected():
    """A run an agent started may not deploy to production, even for an approved change."""
    state, reason = judge_deployment(DEFAULT_POLICY, "Production", AGENT, Outcome.SUCCESS, agent_involved=False)
    assert (state, reason.code) == ("rejected", "deployment-automated-requester")
    assert reason.unblock == "A human with write access re-runs the deployment to Production"


def test_unknown_requester_is_rejected():
    """A protected deployment whose requester is unknown fails closed."""
    assert judge_deployment(DEFAULT_POLICY, "prod-eu", None, Outcome.SUCCESS, False)[0] == "rejected"


def test_staging_deployment_is_approved():
    """Environments the policy does not protect are approved, whoever asks."""
    state, reason = judge_deployment(DEFAULT_POLICY, "staging", AGENT, Outcome.PENDING, agent_involved=True)
    assert (state, reason.code) == ("approved", "deployment-unprotected")


def test_human_deploy_without_agent_is_approved():
    """A human deploying a change no agent touched is approved on a protected environment."""
    assert judge_deployment(DEFAULT_POLICY, "production", HUMAN, None, agent_involved=False)[0] == "approved"


# --- lifting, tampering, reasons -----------------------------------------------------------------------


def test_edit_by_someone_else_is_tampering():
    """An approval or command edited by someone other than its author is tampering; case does not matter."""
    assert is_tampering("octocat", "copilot-swe-agent[bot]")
    assert not is_tampering("octocat", "OctoCat")
    assert is_tampering("octocat", "")


def test_chain_reasons_are_each_reason_once():
    """The verdict appends each finding's reason once, in order."""
    findings = judge_comment(DEFAULT_POLICY, BOT, "/deploy\n/merge", SRC) + judge_label(DEFAULT_POLICY, BOT,
                                                                                        "automerge", SRC)
    reasons = chain_reasons(findings + findings[:1])
    assert [r.code for r in reasons] == ["chain-command", "chain-command", "chain-label"]
    assert all(r.outcome is Outcome.FAILURE and r.unblock for r in reasons)


def test_command_hit_shape():
    """A hit carries the verb, the normalised line, the pattern and the matched text."""
    [hit] = find_commands("@somebot  merge please", CHAINS)
    assert hit == CommandHit("merge", "@somebot merge please", CHAINS.command_patterns[1], "@somebot merge")


def test_allow_login_without_bot_suffix_matches_the_app():
    """An allow pattern without `[bot]` ("renovate*") matches the app's bot account as well."""
    renovate = actor("renovate[bot]", "Bot")
    policy = with_allow(ChainAllow(actor=GlobSet(("renovate*",)), labels=("*",)))
    assert judge_label(policy, renovate, "automerge", SRC) == []


def test_workflow_allow_entry_permits_matching_runs_only():
    """An allow entry with `workflows` globs permits the runs of those workflows by that bot, no others."""
    from gatekeeper.policy import Policy, load_policy

    policy = load_policy("version: 1\nchains:\n  allow:\n    - actor: github-actions[bot]\n"
                         "      workflows: [.github/workflows/deploy.yml]\n")
    assert isinstance(policy, Policy)
    actions = actor("github-actions[bot]", "Bot")
    assert judge_workflow_run(policy, actions, actions, "workflow_dispatch", "Deploy", ".github/workflows/deploy.yml",
                              1) == []
    assert judge_workflow_run(policy, actions, actions, "workflow_dispatch", "Nuke", ".github/workflows/nuke.yml", 2)
    other = actor("renovate[bot]", "Bot")
    assert judge_workflow_run(policy, other, other, "workflow_dispatch", "Deploy", ".github/workflows/deploy.yml", 3)


def test_ci_events_are_configurable():
    """`chains.ci_events` decides which run events count as ordinary CI; adding one stops its findings."""
    from gatekeeper.policy import Policy, load_policy

    policy = load_policy("version: 1\nchains:\n  ci_events: {add: [pull_request_target]}\n")
    assert isinstance(policy, Policy)
    bot = actor("dependabot[bot]", "Bot")
    label = ".github/workflows/label.yml"
    assert judge_workflow_run(policy, bot, bot, "pull_request_target", "Label", label, 4) == []
    assert judge_workflow_run(DEFAULT_POLICY, bot, bot, "pull_request_target", "Label", label, 5)


def test_merge_conflict_report_is_not_a_command():
    """A bot telling someone about merge conflicts (`@alice merge conflicts found`) commands nothing."""
    assert judge_comment(DEFAULT_POLICY, AGENT, "@alice merge conflicts found in src/app.py", SRC) == []
    assert judge_comment(DEFAULT_POLICY, AGENT, "@alice merge conflict", SRC) == []
    assert [f.key for f in judge_comment(DEFAULT_POLICY, AGENT, "@mergify merge", SRC)] == ["merge"]
