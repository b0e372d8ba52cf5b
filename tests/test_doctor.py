"""`agentgate doctor` against the fake GitHub: each way an installation silently stops gating (a missing
required check, one not bound to the App, an admin or ruleset bypass, a production environment without
agentgate's rule, failed deliveries, an invalid policy, missing permissions) is reported with its stable id and
a fix, a correct setup passes, and the exit code says which (0 all hold, 1 one does not, 2 cannot run)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper.cli.main import main
from gatekeeper.doctor import CHECK_IDS
from gatekeeper.forges.github.doctor import required_events, required_permissions
from gatekeeper.settings import Settings
from tests.fakegithub import FakeGitHub, FakeState, Fault, admin, running_fake_github
from tests.fakegithub.state import iso
from tests.keys import app_key_pair

APP_ID, OTHER_APP = 4242, 999
INSTALLATION = 77
REPO = "acme/widgets"
# What agentgate needs, plus Administration: read so doctor can read branch protection.
GRANTED = {**required_permissions(Settings()), "administration": "read"}


def correct_setup(state: FakeState) -> FakeState:
    """The App registered and installed with everything agentgate needs; `main` protected by branch
    protection requiring `agentgate` from this App with admins included; `production` protected by the App;
    a valid policy; one successful delivery."""
    state.add_installation(INSTALLATION, "acme", [REPO], permissions=GRANTED)
    admin.configure_app(state, permissions=GRANTED, events=required_events())
    admin.protect_branch(state, REPO, "main")
    admin.add_environment(state, REPO, "production")
    admin.add_environment(state, REPO, "staging", apps=[])  # not protected by the policy: needs no rule
    state.set_content(REPO, ".agentgate.yml", "version: 1\nsensitive_paths: {add: ['db/**']}\n")
    log_delivery(state, 202)
    return state


def log_delivery(state: FakeState, code: int, hours_ago: float = 1.0, guid: str | None = None) -> None:
    """One attempt in the App's delivery log, as GitHub records it."""
    with state.lock:
        state.hook_deliveries.append({
            "id": state.next_id(), "guid": guid or str(uuid.uuid4()),
            "delivered_at": iso(state.now() - hours_ago * 3600),
            "redelivery": False, "duration": 0.1, "status": "OK" if code < 300 else f"Invalid HTTP Response: {code}",
            "status_code": code, "event": "pull_request", "action": "opened", "installation_id": INSTALLATION,
            "repository_id": 1, "throttled_at": None, "url": "https://agentgate.example/webhooks/github"})


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    private, public = app_key_pair()
    state = correct_setup(FakeState(app_id=APP_ID, public_key_pem=public, hook_log=True))
    with running_fake_github(state) as gh:
        for name in ("AGENTGATE_GITLAB_URL", "AGENTGATE_GITLAB_TOKEN", "AGENTGATE_GITHUB_PRIVATE_KEY_PATH",
                     "AGENTGATE_CHECK_RUNS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AGENTGATE_GITHUB_APP_ID", str(APP_ID))
        monkeypatch.setenv("AGENTGATE_GITHUB_PRIVATE_KEY", private)
        monkeypatch.setenv("AGENTGATE_GITHUB_API_URL", gh.url)
        yield gh


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def check(report: dict[str, Any], check_id: str, repo: str | None = REPO) -> dict[str, Any]:
    found = [c for c in report["checks"] if c["id"] == check_id and c["repo"] == repo]
    assert len(found) == 1, (check_id, repo, report)
    return found[0]


def failing(report: dict[str, Any]) -> set[str]:
    return {c["id"] for c in report["checks"] if not c["ok"]}


# ---- a correct setup ----------------------------------------------------------------------------------------------

def test_a_correct_setup_passes_every_check(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 and `ok: true` when everything holds; the JSON is exactly {"ok", "checks": [{"id", "repo", "ok",
    "message", "fix"}]} with every stable id for the repository (App-wide ones with `repo: null`)."""
    code, report = doctor(capsys)
    assert code == 0, report
    assert set(report) == {"ok", "checks"} and report["ok"] is True
    for c in report["checks"]:
        assert set(c) == {"id", "repo", "ok", "message", "fix"}
        assert c["ok"] is True and c["fix"] is None and c["message"]
    assert {c["id"] for c in report["checks"] if c["repo"] == REPO} == set(CHECK_IDS) - {"deliveries", "permissions"}
    assert {c["id"] for c in report["checks"] if c["repo"] is None} == {"permissions", "deliveries"}
    assert "production" in check(report, "deployment-protection")["message"]


def test_a_correct_setup_through_a_ruleset_passes(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """A ruleset requiring `agentgate` from this App, with an empty bypass list, gates as well as branch
    protection; reading its bypass list takes Administration: write (GitHub shows it only to editors)."""
    state = github.state
    admin.admin_of(state).repo(REPO).protection.clear()
    state.installations[INSTALLATION]["permissions"]["administration"] = "write"
    admin.add_ruleset(state, REPO, rules=[admin.required_checks_rule(("agentgate", APP_ID)), admin.merge_queue_rule()])
    code, report = doctor(capsys)
    assert code == 0, report
    assert "ruleset 'protect default'" in check(report, "check-bound-to-app")["message"]
    assert "merge queue on main" in check(report, "required-check")["message"]


def test_doctor_reads_only_and_revokes_its_token(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Doctor's token asks for read permissions only, and is revoked when it is done."""
    doctor(capsys)
    mints = github.state.calls_matching("POST", r"/app/installations/\d+/access_tokens")
    assert len(mints) == 1
    assert set(mints[0].body["permissions"].values()) == {"read"}
    assert github.state.calls_matching("DELETE", "/installation/token")
    assert all(t.revoked for t in github.state.tokens.values())
    assert not [c for c in github.state.calls if c.method not in ("GET", "DELETE") and "access_tokens" not in c.path]


# ---- each way the gate silently stops gating ----------------------------------------------------------------------

def test_missing_required_check(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """A default branch whose protection does not require `agentgate` fails `required-check` (exit 1), with the
    setting that adds it."""
    admin.protect_branch(github.state, REPO, "main", checks=[("ci/test", None)])
    code, report = doctor(capsys)
    assert code == 1 and report["ok"] is False
    required = check(report, "required-check")
    assert not required["ok"] and "main" in required["message"]
    assert "Require status checks to pass" in required["fix"] and "agentgate" in required["fix"]
    assert not check(report, "check-bound-to-app")["ok"]


def test_another_protected_branch_without_the_check(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Every protected branch, not only the default one, must require the check."""
    admin.protect_branch(github.state, REPO, "release/1", checks=[("ci/test", None)])
    code, report = doctor(capsys)
    assert code == 1
    required = check(report, "required-check")
    assert not required["ok"] and "release/1" in required["message"] and "main: required" not in required["message"]


@pytest.mark.parametrize("source", [None, OTHER_APP], ids=["any-source", "another-app"])
def test_check_not_bound_to_the_app(github: FakeGitHub, capsys: pytest.CaptureFixture[str], source: int | None) -> None:
    """Required from any source, or from another App, anyone able to post an `agentgate` status satisfies it:
    `check-bound-to-app` fails while `required-check` holds."""
    admin.protect_branch(github.state, REPO, "main", checks=[("agentgate", source)])
    code, report = doctor(capsys)
    assert code == 1
    assert check(report, "required-check")["ok"]
    bound = check(report, "check-bound-to-app")
    assert not bound["ok"] and ("any source" if source is None else str(OTHER_APP)) in bound["message"]
    assert "source" in bound["fix"]


def test_ruleset_bound_to_another_app(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """The same through a ruleset: `integration_id` names another App."""
    admin.admin_of(github.state).repo(REPO).protection.clear()
    admin.add_ruleset(github.state, REPO, rules=[admin.required_checks_rule(("agentgate", OTHER_APP))])
    code, report = doctor(capsys)
    assert code == 1 and check(report, "required-check")["ok"]
    assert not check(report, "check-bound-to-app")["ok"]


def test_admin_bypass(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Branch protection that admins may bypass (`enforce_admins` off) fails `no-bypass`, with the setting."""
    admin.protect_branch(github.state, REPO, "main", enforce_admins=False)
    code, report = doctor(capsys)
    assert code == 1
    assert check(report, "required-check")["ok"] and check(report, "check-bound-to-app")["ok"]
    no_bypass = check(report, "no-bypass")
    assert not no_bypass["ok"] and "repository admins" in no_bypass["message"]
    assert "Do not allow bypassing the above settings" in no_bypass["fix"]


@pytest.mark.parametrize("actor, named", [
    ({"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}, "repository admins"),
    ({"actor_id": 31337, "actor_type": "Integration", "bypass_mode": "always"}, "the App with id 31337"),
    ({"actor_id": None, "actor_type": "OrganizationAdmin", "bypass_mode": "pull_request"}, "organisation admins"),
])
def test_ruleset_bypass_actor(github: FakeGitHub, capsys: pytest.CaptureFixture[str], actor: dict[str, Any],
                              named: str) -> None:
    """A ruleset with anyone on its bypass list (admins, an App, organisation admins) fails `no-bypass`."""
    state = github.state
    admin.admin_of(state).repo(REPO).protection.clear()
    state.installations[INSTALLATION]["permissions"]["administration"] = "write"
    admin.add_ruleset(state, REPO, name="gate", bypass_actors=[actor])
    code, report = doctor(capsys)
    assert code == 1
    no_bypass = check(report, "no-bypass")
    assert not no_bypass["ok"] and named in no_bypass["message"]
    assert "Rulesets → gate → Bypass list" in no_bypass["fix"]


def test_ruleset_bypass_list_unseen_is_not_ok(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """With Administration: read only, GitHub hides a ruleset's bypass list: `no-bypass` cannot be verified, so
    it is not ok, and its fix says what would let doctor see it."""
    admin.admin_of(github.state).repo(REPO).protection.clear()
    admin.add_ruleset(github.state, REPO)
    code, report = doctor(capsys)
    assert code == 1 and check(report, "required-check")["ok"]
    no_bypass = check(report, "no-bypass")
    assert not no_bypass["ok"] and "Administration: Read and write" in no_bypass["fix"]


def test_evaluate_mode_ruleset_does_not_count(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """A ruleset in "evaluate" enforcement enforces nothing: the check is not required."""
    admin.admin_of(github.state).repo(REPO).protection.clear()
    admin.add_ruleset(github.state, REPO, enforcement="evaluate")
    code, report = doctor(capsys)
    assert code == 1 and not check(report, "required-check")["ok"]


def test_production_environment_without_the_rule(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """An environment the policy protects (`prod-eu` matches `prod-*`) without agentgate as a deployment
    protection rule, or with only another App's rule, fails `deployment-protection`."""
    admin.add_environment(github.state, REPO, "prod-eu", apps=[OTHER_APP])
    code, report = doctor(capsys)
    assert code == 1
    env = check(report, "deployment-protection")
    assert not env["ok"] and "prod-eu" in env["message"] and "production" not in env["message"]
    assert "Environments → prod-eu → Deployment protection rules" in env["fix"]


def test_protected_environments_come_from_the_policy(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """The policy's `chains.protected_environments` decides which environments need the rule."""
    state = github.state
    admin.add_environment(state, REPO, "staging", apps=[])
    state.set_content(REPO, ".agentgate.yml", "version: 1\nchains:\n  protected_environments: [staging]\n")
    code, report = doctor(capsys)
    assert code == 1
    assert "staging" in check(report, "deployment-protection")["message"]


def test_failed_delivery(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """A webhook delivery that failed in the last 24 hours fails `deliveries`; one older than that does not."""
    log_delivery(github.state, 500, hours_ago=30)
    code, report = doctor(capsys)
    assert code == 0, report
    log_delivery(github.state, 503, hours_ago=2)
    code, report = doctor(capsys)
    deliveries = check(report, "deliveries", None)
    assert code == 1 and not deliveries["ok"] and "503" in deliveries["message"]
    assert "Recent Deliveries" in deliveries["fix"]


def test_no_webhook_is_a_failure(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a delivery log (GitHub answers 404: the App has no webhook) `deliveries` does not hold."""
    github.state.add_fault(Fault("GET", "/app/hook/deliveries", status=404, message="Not Found"))
    code, report = doctor(capsys)
    assert code == 1 and "no webhook" in check(report, "deliveries", None)["message"]


def test_invalid_policy(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid `.agentgate.yml` on the default branch fails `policy-valid` with its first error (PATH:LINE:COL)."""
    github.state.set_content(REPO, ".agentgate.yml", "version: 1\nrules:\n  - name: x\n    when: {actor: robot}\n")
    code, report = doctor(capsys)
    policy = check(report, "policy-valid")
    assert code == 1 and not policy["ok"] and ".agentgate.yml:4:" in policy["message"]
    assert "agentgate check-config" in policy["fix"]


def test_no_policy_file_is_valid(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """No `.agentgate.yml` means the secure default: `policy-valid` holds."""
    github.state.repo(REPO).contents.clear()
    code, report = doctor(capsys)
    assert code == 0 and "secure default" in check(report, "policy-valid")["message"]


def test_missing_permission_and_event(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """The App's registration lacking a permission or event, or an installation that did not accept them,
    fails `permissions` (App-wide, `repo: null`) naming what is missing and where to grant it."""
    admin.configure_app(github.state, permissions={**GRANTED, "statuses": "read"},
                        events=[e for e in required_events() if e != "merge_group"])
    admin.set_installation_events(github.state, INSTALLATION, ["pull_request"])
    code, report = doctor(capsys)
    perms = check(report, "permissions", None)
    assert code == 1 and not perms["ok"]
    assert "statuses: write" in perms["message"] and "merge_group" in perms["message"]
    assert "installation 77 (acme) has not accepted" in perms["message"]
    assert "Permissions & events" in perms["fix"] and "Review request" in perms["fix"]


def test_a_403_on_protection_names_the_permission(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Without Administration: read, GitHub answers 403 on branch protection: the checks that rest on it are not
    ok (cannot be verified), and their fix names the permission."""
    github.state.installations[INSTALLATION]["permissions"].pop("administration")
    code, report = doctor(capsys)
    assert code == 1
    for cid in ("required-check", "check-bound-to-app", "no-bypass"):
        c = check(report, cid)
        assert not c["ok"] and "403" in c["message"] and "Administration: Read-only" in c["fix"], c
    assert check(report, "deployment-protection")["ok"]


def test_a_403_on_environments_names_the_permission(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """Environments unreadable (no Actions: read) leave `deployment-protection` unverified: not ok."""
    github.state.installations[INSTALLATION]["permissions"].pop("actions")
    code, report = doctor(capsys)
    env = check(report, "deployment-protection")
    assert code == 1 and not env["ok"] and "Actions: Read-only" in env["fix"]


# ---- scope, formats, exit codes -------------------------------------------------------------------------------------

def test_repo_limits_to_one_repository(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """`--repo` checks that repository only; a repository the App is not installed on is a failed check."""
    github.state.add_installation(INSTALLATION, "acme", [REPO, "acme/gadgets"], permissions=GRANTED)
    code, report = doctor(capsys, "--repo", REPO)
    assert code == 0 and {c["repo"] for c in report["checks"]} == {None, REPO}
    code, report = doctor(capsys, "--repo", "acme/elsewhere")
    assert code == 1 and not check(report, "permissions", "acme/elsewhere")["ok"]


def test_text_format_is_a_checklist_with_fixes(github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    """The text format lists every check as a checklist line and the fix under each failure."""
    admin.protect_branch(github.state, REPO, "main", enforce_admins=False)
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[ok]   required-check" in out and "[FAIL] no-bypass" in out
    assert "fix: Settings → Branches → edit the rule for main" in out
    assert out.rstrip().endswith("agentgate does not fully gate until they do.")


def test_no_credentials_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without platform credentials doctor cannot run: exit 2 and a message saying what to set."""
    for name in ("AGENTGATE_GITHUB_APP_ID", "AGENTGATE_GITHUB_PRIVATE_KEY", "AGENTGATE_GITHUB_PRIVATE_KEY_PATH",
                 "AGENTGATE_GITLAB_URL", "AGENTGATE_GITLAB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["doctor", "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "AGENTGATE_GITHUB_APP_ID" in captured.err


def test_credentials_github_refuses_exit_2(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Credentials GitHub does not accept (another App's id) mean doctor cannot run: exit 2."""
    monkeypatch.setenv("AGENTGATE_GITHUB_APP_ID", "1")
    assert main(["doctor"]) == 2
    assert "did not accept the App's credentials" in capsys.readouterr().err


# ---- the fake's new routes hold to GitHub's OpenAPI description ---------------------------------------------------

ADMIN_EXAMPLES = {
    ("GET", "/app/installations"): "/app/installations",
    ("GET", "/installation/repositories"): "/installation/repositories",
    ("GET", "/repos/{owner}/{repo}/branches"): f"/repos/{REPO}/branches?protected=true",
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection"): f"/repos/{REPO}/branches/main/protection",
    ("GET", "/repos/{owner}/{repo}/rules/branches/{branch}"): f"/repos/{REPO}/rules/branches/main",
    ("GET", "/repos/{owner}/{repo}/rulesets/{ruleset_id}"): f"/repos/{REPO}/rulesets/{{ruleset}}",
    ("GET", "/repos/{owner}/{repo}/environments"): f"/repos/{REPO}/environments",
    ("GET", "/repos/{owner}/{repo}/environments/{environment_name}/deployment_protection_rules"):
        f"/repos/{REPO}/environments/production/deployment_protection_rules",
}


@pytest.mark.parametrize("key", sorted(ADMIN_EXAMPLES), ids=lambda k: k[1])
def test_admin_routes_answer_with_every_required_field(github: FakeGitHub, key: tuple[str, str]) -> None:
    """Each route the fake serves for doctor is in routes.json (GitHub's OpenAPI description) and answers with
    the documented status and every required field, one level deep."""
    import requests

    from tests.test_fakegithub import SPEC, app_jwt, assert_required_fields, mint

    entry = SPEC[key]
    ruleset = admin.add_ruleset(github.state, REPO)
    private, _ = app_key_pair()
    auth = (f"Bearer {app_jwt(private, github.state.now(), iss=str(APP_ID))}" if key[1].startswith("/app/")
            else f"token {mint(github, private)}")
    r = requests.get(github.url + ADMIN_EXAMPLES[key].format(ruleset=ruleset), headers={"Authorization": auth},
                     timeout=10)
    assert r.status_code == entry["status"], r.text
    data = r.json()
    items = data if entry["array"] else [data]
    assert items, "the example should list something"
    for i, item in enumerate(items):
        assert_required_fields(item, entry, f"{entry['operation_id']}[{i}]")
