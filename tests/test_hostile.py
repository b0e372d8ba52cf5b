"""Hostile input cannot exhaust a worker: each test is an input that took seconds, minutes or for ever
(or hundreds of API calls) before the budgets it exercises, and is now bounded and fails closed.

Timings run in a forked child, measured there with `time.perf_counter`; a child still running well
past its bound is killed and the test fails, so a regression fails fast instead of hanging CI."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from gatekeeper.core import chains
from gatekeeper.core.chains import COMMENT_BUDGET_SECONDS, UNSCANNED, find_commands, judge_comment
from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, PullRequestFacts, User
from gatekeeper.core.verdict import Outcome
from gatekeeper.forges.port import Commit, Issue, IssueEvent, PullRequest, Review
from gatekeeper.policy import DEFAULT_POLICY, InvalidPolicy, Policy, load_policy
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.model import ChainPolicy
from gatekeeper.policy.patterns import (
    MATCH_TIMEOUT_SECONDS,
    VERDICT_BUDGET_SECONDS,
    BudgetSpent,
    Pattern,
    PatternTimeout,
    RegexBudget,
)
from gatekeeper.policy.schema import (
    MAX_COMMAND_PATTERNS,
    MAX_EXTENDS,
    MAX_GLOBS,
    MAX_ONLY_PATHS,
    MAX_PATTERNS_PER_RULE,
    MAX_RULE_PATH_GLOBS,
    MAX_RULE_REGEXES,
)
from gatekeeper.state import decisions
from gatekeeper.state.queue import JobQueue
from gatekeeper.worker import pipeline, preview, runtime
from tests.memoryforge import MemoryForge
from tests.policies import HUMAN, actor

BOUND_SECONDS = 2.0  # generous: the budgets below are a fraction of it
KILL_AFTER_SECONDS = 15.0  # the code before these budgets took minutes (or for ever) on these inputs
CATASTROPHIC = "(a|aa)+$"  # exponential backtracking on a run of a's that does not end the text
BOT = actor("helper[bot]", "Bot")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """fn() in a forked child: (its duration by time.perf_counter, its picklable result)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        start = time.perf_counter()
        try:
            result: Any = ("ok", fn())
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            result = ("raised", repr(exc))
        send.send((time.perf_counter() - start, result))

    process = context.Process(target=child, daemon=True)
    process.start()
    try:
        if not receive.poll(KILL_AFTER_SECONDS):
            pytest.fail(f"still running after {KILL_AFTER_SECONDS} s (the bound is {BOUND_SECONDS} s)")
        elapsed, (status, result) = receive.recv()
    finally:
        process.kill()
        process.join()
    assert status == "ok", result
    return elapsed, result


def facts(author=HUMAN, title="Change", body="", base="main", files=("src/app.py",)) -> PullRequestFacts:
    return PullRequestFacts(repo="o/r", number=7, author=author, head_sha="a" * 40, head_ref="agent/x", base_ref=base,
                            base_sha="c" * 40, default_branch="main", head_repo="o/r", title=title, body=body,
                            changed_files=tuple(ChangedFile(f) for f in files))


def rules(*bodies: str) -> str:
    return "version: 1\nrules:\n" + "".join(f"  - name: r{i}\n    {b}\n    block: x\n" for i, b in enumerate(bodies))


def loaded(text: str) -> Policy:
    found = load_policy(text)
    assert isinstance(found, Policy), found
    return found


def errors(text: str) -> list[str]:
    found = load_policy(text)
    assert isinstance(found, InvalidPolicy), "the policy should be invalid"
    return [str(e) for e in found.errors]


# -- the regex budget of one verdict ---------------------------------------------------------------


def test_slow_title_and_body_patterns_decide_within_the_verdict_budget_and_fail_closed():
    """The worst policy the limits admit (every title and body pattern catastrophic) against a hostile
    title and 64 KB body: the verdict is `error` within a small multiple of one timeout, naming the rule
    that ran out and the rules left unchecked (before: every pattern spent its own 50 ms, 59 s for
    1,000 rules)."""
    half = MAX_RULE_REGEXES // 2
    text = rules(*[f"when: {{title: '{CATASTROPHIC}', body: '{CATASTROPHIC}'}}"] * half)
    hostile = facts(title="a" * 250 + "!", body="a" * 65_000 + "!")

    def decide() -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
        verdict = evaluate_pull_request(loaded(text), hostile)
        return verdict.outcome.value, [(r.code, r.message, r.data) for r in verdict.reasons]

    elapsed, (outcome, reasons) = timed(decide)
    # The budget's worst case is VERDICT_BUDGET_SECONDS + MATCH_TIMEOUT_SECONDS (0.25 s); before it,
    # these 64 patterns took 32-64 timeouts of 50 ms.
    assert elapsed < BOUND_SECONDS / 2
    assert outcome == "error"
    by_code = {code: (message, data) for code, message, data in reasons}
    assert by_code["pattern-timeout"][0].startswith(f"Rule r0: pattern '{CATASTROPHIC}' took longer than")
    message, data = by_code["regex-budget"]
    assert message.startswith(f"Rule r1 and {half - 2} more rule(s) not checked: rule r0 ran out")
    assert data["rules"] == [f"r{i}" for i in range(1, half)] and data["spent_by"] == "r0"


def test_the_allowances_of_one_verdict_add_up_to_the_budget(monkeypatch):
    """However many patterns a policy has, the timeouts its searches are given add up to at most the
    verdict's budget (and one more timeout's worth for retries), so patterns that are slow without
    ever timing out are bounded too."""
    given: list[float] = []
    search = Pattern.search

    def recording(self: Pattern, text: str, timeout: float = MATCH_TIMEOUT_SECONDS) -> bool:
        given.append(timeout)
        return search(self, text, timeout)

    monkeypatch.setattr(Pattern, "search", recording)
    half = MAX_RULE_REGEXES // 2
    text = rules(*[f"when: {{title: 't', body: 'never{i}'}}" for i in range(half)])
    verdict = evaluate_pull_request(loaded(text), facts(title="t" * 200, body="b" * 60_000))
    assert verdict.outcome is Outcome.SUCCESS
    assert len(given) == MAX_RULE_REGEXES
    assert sum(given) <= VERDICT_BUDGET_SECONDS + MATCH_TIMEOUT_SECONDS + 1e-9  # shares, and a retry's worth


def test_a_few_patterns_keep_the_full_timeout_each(monkeypatch):
    """A policy with a handful of patterns gives each search the usual 50 ms: the budget only bites
    when many patterns would otherwise multiply that."""
    given: list[float] = []
    search = Pattern.search
    monkeypatch.setattr(Pattern, "search", lambda self, text, timeout=MATCH_TIMEOUT_SECONDS: (
        given.append(timeout), search(self, text, timeout))[1])
    evaluate_pull_request(loaded(rules("when: {title: '^wip'}")), facts(title="fix"))
    assert given == [MATCH_TIMEOUT_SECONDS]


# -- limits in the schema --------------------------------------------------------------------------


def test_too_many_rules_is_an_error_at_the_rules_key():
    """More than 200 rules, in the file or with those it inherits, is an error with line:col."""
    assert errors(rules(*["when: {labels: [x]}"] * 201)) == [".agentgate.yml:2:1: rules: 201 entries; the limit is 200"]
    inherited = "version: 1\nextends: preset:strict\n" + rules(*["when: {labels: [x]}"] * 199).removeprefix(
        "version: 1\n")
    [error] = errors(inherited)
    assert error.startswith(".agentgate.yml:3:1: rules: 199 rules here and ") and error.endswith("the limit is 200")


def test_too_many_globs_and_patterns_in_one_rule_is_an_error_at_the_rule():
    """A rule matching with more than 50 globs and patterns (`when` and `unless` together) is an error."""
    globs = ", ".join(f"'dir{i}/**'" for i in range(MAX_PATTERNS_PER_RULE))
    text = rules(f"when: {{paths: [{globs}]}}\n    unless: {{title: wip}}")
    assert errors(text) == [
        f".agentgate.yml:3:5: rules[0]: the rule matches with {MAX_PATTERNS_PER_RULE + 1} globs (braces expanded) "
        f"and patterns; the limit is {MAX_PATTERNS_PER_RULE} per rule (`when` and `unless` together)"]
    # A brace is as many globs as it expands to: 48 rules of `{1..64}`-style globs took 44 s to decide.
    assert errors(rules("when: {paths: ['{1..51}/*x*']}")) == [
        ".agentgate.yml:3:5: rules[0]: the rule matches with 51 globs (braces expanded) and patterns; the limit is "
        f"{MAX_PATTERNS_PER_RULE} per rule (`when` and `unless` together)"]


def test_too_many_title_and_body_patterns_is_an_error_at_the_first_one_over():
    """A policy may have at most 64 title and body patterns over all its rules; the one over is named.
    A pattern longer than 512 characters is an error where it is written."""
    text = rules(*["when: {title: x}"] * (MAX_RULE_REGEXES + 1))
    line = 4 + 3 * MAX_RULE_REGEXES
    assert errors(text) == [
        f".agentgate.yml:{line}:19: rules[{MAX_RULE_REGEXES}].when.title: the policy's rules have more than "
        f"{MAX_RULE_REGEXES} title and body patterns (counting rules inherited through extends)"]
    assert errors(rules("when: {title: '" + "a" * 513 + "'}")) == [
        ".agentgate.yml:4:19: rules[0].when.title: pattern is longer than 512 characters"]


def test_too_many_path_globs_is_an_error_at_the_first_one_over():
    """Path globs are matched against every changed file: at most 1,000 `paths`/`only_paths` globs over
    all the rules, at most 200 in one list such as `sensitive_paths` and 50 in a trusted bot's
    `only_paths`, braces expanded (`{1..64}` is 64 globs)."""
    per_rule = 48
    text = rules(*["when: {paths: [" + ", ".join(f"'d{k}/**'" for k in range(per_rule)) + "]}"] * 21)
    line = text.splitlines()[3 + 3 * 20]
    assert errors(text) == [
        f".agentgate.yml:{4 + 3 * 20}:{line.index(chr(39) + 'd40/**') + 1}: rules[20].when.paths[40]: the policy's "
        f"rules have more than {MAX_RULE_PATH_GLOBS} paths and only_paths globs (counting rules inherited through "
        f"extends)"]
    sensitive = ", ".join(f"'s{k}/**'" for k in range(MAX_GLOBS + 1))
    assert errors(f"version: 1\nsensitive_paths: [{sensitive}]\n") == [
        f".agentgate.yml:2:1: sensitive_paths: {MAX_GLOBS + 1} entries; the limit is {MAX_GLOBS}"]
    braces = ", ".join(f"'{{1..64}}*{k}/**'" for k in range(4))
    assert errors(f"version: 1\nsensitive_paths: [{braces}]\n") == [
        f".agentgate.yml:2:18: sensitive_paths: 256 globs once braces are expanded; the limit is {MAX_GLOBS}"]
    bot = ("version: 1\nidentities:\n  trusted_bots:\n    - login: x\n"
           f"      only_paths: ['{{1..{MAX_ONLY_PATHS + 1}}}/**']\n")
    assert errors(bot) == [f".agentgate.yml:5:19: identities.trusted_bots[0].only_paths: {MAX_ONLY_PATHS + 1} globs "
                           f"once braces are expanded; the limit is {MAX_ONLY_PATHS}"]


def test_too_many_command_patterns_or_extends_is_an_error():
    """At most 32 command patterns, and at most 8 `extends` entries (each org file is a platform read)."""
    commands = ", ".join(f"'^/c{i}'" for i in range(MAX_COMMAND_PATTERNS + 1))
    assert errors(f"version: 1\nchains:\n  commands: [{commands}]\n") == [
        f".agentgate.yml:3:3: chains.commands: {MAX_COMMAND_PATTERNS + 1} entries; the limit is {MAX_COMMAND_PATTERNS}"]
    extends = ", ".join(f"org:r{i}" for i in range(MAX_EXTENDS + 1))
    assert errors(f"version: 1\nextends: [{extends}]\n")[0] == (
        f".agentgate.yml:2:1: extends: {MAX_EXTENDS + 1} entries; the limit is {MAX_EXTENDS}")


# -- globs -----------------------------------------------------------------------------------------


def test_a_glob_with_many_stars_matches_in_linear_time():
    """`*a*a*...*b` against a long name backtracked over every way of spreading its stars (Python's
    `re` has no timeout: 33 s for 6 stars on 100 characters, for ever at 120): as a login, branch or
    path glob of a rule, it now decides at once."""
    stars = "*a" * 120 + "*b"
    text = rules(f"when: {{branch: '{stars}'}}", f"when: {{paths: ['**/{stars}']}}", f"when: {{login: '{stars}'}}")

    def decide() -> tuple[bool, str]:
        name = "a" * 255
        verdict = evaluate_pull_request(loaded(text), facts(base=name, files=(f"src/{name}",)))
        return GlobSet((stars,)).match(name), verdict.outcome.value

    elapsed, (matched, outcome) = timed(decide)
    assert elapsed < BOUND_SECONDS
    assert (matched, outcome) == (False, "success")


def test_globstars_between_segments_match_in_linear_time():
    """`a*/**/a*/**/...` over a deep path: each run of segments between globstars is placed once."""
    pattern = "/".join(["a*", "**"] * 40) + "/b"

    def match() -> bool:
        return GlobSet((pattern,)).match("/".join(["a"] * 2000))

    elapsed, matched = timed(match)
    assert elapsed < BOUND_SECONDS and matched is False


# -- command patterns in comments ------------------------------------------------------------------


def _hostile_comment() -> str:
    """64 KB of distinct lines, each one on which CATASTROPHIC runs out of time."""
    lines, size, i = [], 0, 0
    while size < chains.MAX_BODY_CHARS - 100:
        line = "a" * 60 + f"{i}b"
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines)


def test_a_64kb_comment_cannot_multiply_the_command_timeout():
    """A command pattern that times out on every line of a 64 KB comment: the scan stops at the first
    timeout and the rest counts as unscanned, a finding for a bot (before: 250 ms a line, ~4 minutes)."""
    policy = replace(DEFAULT_POLICY, chains=ChainPolicy(command_patterns=(CATASTROPHIC,)))
    body = _hostile_comment()

    def judge() -> tuple[list[tuple[str, str]], list[str]]:
        hits = [(h.command, h.line) for h in find_commands(body, policy.chains)]
        return hits, [f.reason.code for f in judge_comment(policy, BOT, body, ["src/app.py"])]

    elapsed, (hits, codes) = timed(judge)
    assert elapsed < BOUND_SECONDS
    [(command, line)] = hits
    assert command == UNSCANNED and line.endswith(f"(and the {body.count(chr(10))} lines after it)")
    assert codes == ["chain-comment-unscanned"]


def test_a_comment_of_more_lines_than_the_budget_pays_for_is_unscanned_past_them():
    """Each search gets at least 0.1 ms, so one comment's budget pays for 10,000 searches: with the 5
    built-in patterns, 2,000 distinct lines. A 64 KB comment of 12,000 short lines is read that far
    (the command on its first line is found) and the rest counts as unscanned (fail closed)."""
    body = "/deploy production\n" + "\n".join(str(i) for i in range(12_000))
    assert len(body) < chains.MAX_BODY_CHARS

    def scan() -> list[tuple[str, str]]:
        return [(h.command, h.line) for h in find_commands(body, ChainPolicy())]

    elapsed, hits = timed(scan)
    assert elapsed < BOUND_SECONDS
    [(first, _), (rest, line)] = hits
    assert first == "deploy" and rest == UNSCANNED
    assert line == "1999 (and the 10000 lines after it): more lines than one comment's check reads"


def test_the_allowances_of_one_comment_add_up_to_its_budget(monkeypatch):
    """Whatever the comment, the timeouts its searches are given add up to at most the comment's
    budget (and one more timeout's worth for retries); a long legitimate comment, 1,700 lines of a
    coverage table, is still read to its last line."""
    given: list[float] = []

    @dataclass
    class Recording:
        compiled: Any

        @property
        def pattern(self) -> str:
            return str(self.compiled.pattern)

        def search(self, line: str, timeout: float) -> Any:
            given.append(timeout)
            return self.compiled.search(line, timeout=timeout)

    compiled = chains._compiled
    monkeypatch.setattr(chains, "_compiled", lambda patterns: tuple(Recording(p) for p in compiled(patterns)))
    body = "\n".join(f"| src/module_{i}.py | {i % 100}% covered |" for i in range(1700)) + "\n/deploy production"
    assert len(body) < chains.MAX_BODY_CHARS
    hits = find_commands(body, ChainPolicy())
    assert [h.command for h in hits] == ["deploy"]
    assert sum(given) <= COMMENT_BUDGET_SECONDS + chains.REGEX_TIMEOUT_SECONDS + 1e-9  # shares, and retries


# -- the policy change preview ---------------------------------------------------------------------

LEAD = User("lead", 10)
PROPOSED = "version: 1\napprovals: {required: 0}\n"
POLICY_HEAD = "9" * 40


@dataclass
class ReadCountingForge(MemoryForge):
    """The in-memory forge with files at commits, counting every read it answers."""

    texts: dict[tuple[str, str | None], str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def get_pull_request(self, number: int) -> PullRequest:
        self.calls.append(f"pull {number}")
        return super().get_pull_request(number)

    def list_open_pulls(self, limit: int) -> list[PullRequest]:
        self.calls.append("open pulls")
        return super().list_open_pulls(limit)

    def pulls_for_commit(self, sha: str) -> list[PullRequest]:
        self.calls.append(f"pulls at {sha[:7]}")
        return super().pulls_for_commit(sha)

    def get_file(self, path: str, ref: str | None) -> str | None:
        self.calls.append(f"file {path}@{(ref or '')[:7]}")
        return self.texts.get((path, ref))

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        self.calls.append(f"repo file {full_name}")
        return None

    def list_changed_files(self, number: int) -> tuple[list[ChangedFile], bool]:
        self.calls.append(f"files {number}")
        return super().list_changed_files(number)

    def list_reviews(self, number: int) -> list[Review]:
        self.calls.append(f"reviews {number}")
        return super().list_reviews(number)

    def list_commits(self, number: int) -> tuple[list[Commit], bool]:
        self.calls.append(f"commits {number}")
        return super().list_commits(number)

    def get_permission(self, login: str) -> str:
        self.calls.append(f"permission {login}")
        return super().get_permission(login)

    def branch_sha(self, branch: str) -> str | None:
        self.calls.append(f"branch {branch}")
        return super().branch_sha(branch)

    def get_issue(self, number: int) -> Issue | None:
        self.calls.append(f"issue {number}")
        return None

    def issue_events(self, number: int) -> list[IssueEvent]:
        self.calls.append(f"events {number}")
        return []

    def others_read(self, own: int) -> set[int]:
        """The other pull requests whose reviews were read: the ones the preview re-evaluated."""
        return {int(c.split()[1]) for c in self.calls if c.startswith("reviews ") and int(c.split()[1]) != own}


@pytest.fixture
def forge(settings, redis_conn):
    memory = ReadCountingForge()
    memory.branches["main"] = "0" * 40
    memory.permissions["lead"] = "write"
    for number in range(1, 31):
        memory.add_pull(number, User("copilot-swe-agent[bot]", 1, bot=True, agent=True), f"{number:040d}",
                        ["src/app.py"])
    rt = runtime.Runtime(replace(settings, dry_run=True), redis_conn, lambda *args: memory,
                         JobQueue(redis_conn, settings.queue_name))
    runtime.configure(rt)
    yield memory
    runtime.configure(None)


def policy_pull(forge: ReadCountingForge, author: User, proposed: str = PROPOSED, number: int = 31) -> None:
    forge.add_pull(number, author, POLICY_HEAD, [".agentgate.yml"])
    forge.texts[(".agentgate.yml", POLICY_HEAD)] = proposed


def run_preview(forge: ReadCountingForge, number: int = 31) -> list[str]:
    """The preview's own reads, after the pull request itself was assessed."""
    rt = runtime.current()
    result = pipeline.assess(rt, forge, forge.get_pull_request(number))
    forge.calls.clear()
    preview.preview_policy_change(rt, forge, result, "no-record", 1)
    return list(forge.calls)


@pytest.mark.parametrize(("author", "level", "why"), [
    (User("outsider", 11), "read", "outsider has read access"),
    (User("copilot-swe-agent[bot]", 1, bot=True, agent=True), "write", "copilot-swe-agent[bot] is an agent"),
])
def test_no_preview_unless_a_human_with_write_access_opened_the_pull_request(forge, redis_conn, author, level, why):
    """Anyone who can open a pull request could make agentgate re-read 30 open pull requests (~150 API
    calls) by touching `.agentgate.yml`: a preview now runs only for a human author with write access;
    otherwise nothing is listed or read, no comment is posted, and the details page says why."""
    forge.permissions[author.login] = level
    policy_pull(forge, author)
    forge.calls.clear()
    decision = pipeline.evaluate(runtime.current(), forge, 31, installation=1)["decision"]
    assert "open pulls" not in forge.calls and forge.others_read(31) == set()
    assert f"file .agentgate.yml@{POLICY_HEAD[:7]}" not in forge.calls
    assert 31 not in forge.comments
    record = decisions.load(redis_conn, decision)
    assert record is not None and f"No preview: {why}" in record.extra["policy_preview_markdown"]


def test_a_preview_re_evaluates_at_most_ten_pull_requests_and_says_what_it_left_out(forge):
    """A human with write access gets a preview of at most 10 other open pull requests, within the
    preview's read budget; the ones left out are named in the comment."""
    policy_pull(forge, LEAD)
    calls = run_preview(forge)
    assert len(calls) <= preview.PREVIEW_READS
    assert forge.others_read(31) == set(range(1, 11))
    comment = forge.comments[31]
    assert "against 10 open pull request(s)" in comment
    assert "Not re-evaluated: #11, #12, #13, #14, #15, #16, #17, #18, #19, #20 and 10 more: a preview re-evaluates " \
           "at most 10 other open pull requests" in comment


def test_a_preview_prefers_pull_requests_whose_facts_are_cached(forge):
    """Pull requests whose files and commits at their head are cached cost one read each: they are
    re-evaluated first."""
    rt = runtime.current()
    for number in (26, 27, 28, 29, 30):
        pipeline.assess(rt, forge, forge.get_pull_request(number))
    policy_pull(forge, LEAD)
    run_preview(forge)
    assert forge.others_read(31) == {26, 27, 28, 29, 30, 1, 2, 3, 4, 5}


def test_a_proposed_policy_naming_many_org_files_reads_at_most_eight(forge):
    """A proposed policy extending dozens of `org:` files fetched each one (a read apiece, from anyone
    who could open a pull request): at most MAX_EXTENDS are fetched, and the file is invalid."""
    extends = ", ".join(f"org:repo{i}" for i in range(60))
    policy_pull(forge, LEAD, f"version: 1\nextends: [{extends}]\n")
    calls = run_preview(forge)
    assert len([c for c in calls if c.startswith("repo file ")]) == MAX_EXTENDS
    assert len(calls) <= preview.PREVIEW_READS
    assert f"extends: 60 entries; the limit is {MAX_EXTENDS}" in forge.comments[31]


def test_a_preview_stops_at_its_read_budget(forge, monkeypatch):
    """However the reads add up (here, a budget too small for ten pull requests), the preview makes at
    most PREVIEW_READS of them and lists the pull requests it could not read."""
    monkeypatch.setattr(preview, "PREVIEW_READS", 8)
    policy_pull(forge, LEAD)
    calls = run_preview(forge)
    assert len(calls) == 8 and calls[0] == "permission lead"
    assert forge.others_read(31) == {1, 2}  # #2's commits were one read too many
    assert "against 1 open pull request(s)" in forge.comments[31]
    assert "Not re-evaluated: #2, #3, #4" in forge.comments[31]


def test_a_search_that_ran_out_of_a_small_share_is_tried_once_more():
    """The regex engine's clock is the wall clock: a small share can run out while the process waits
    for a CPU. Such a search is tried again with a longer timeout, out of one more timeout's worth per
    batch; once that is used, running out spends the budget and later searches are not made."""
    given: list[float] = []

    @dataclass
    class Flaky:
        source: str = "x"
        fail: int = 0

        def search(self, text: str, timeout: float) -> bool:
            given.append(timeout)
            if self.fail:
                self.fail -= 1
                raise PatternTimeout(self.source, timeout)
            return True

    budget = RegexBudget(VERDICT_BUDGET_SECONDS, MAX_RULE_REGEXES)
    share = VERDICT_BUDGET_SECONDS / MAX_RULE_REGEXES
    assert budget.search(Flaky(fail=1), "t") is True  # type: ignore[arg-type]
    assert given == [share, MATCH_TIMEOUT_SECONDS]
    with pytest.raises(PatternTimeout):
        budget.search(Flaky("slow", fail=1), "t")  # type: ignore[arg-type]
    assert budget.spent_by == "slow"
    with pytest.raises(BudgetSpent):
        budget.search(Flaky(), "t")  # type: ignore[arg-type]
