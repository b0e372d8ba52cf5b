"""`agentgate doctor` against the fake GitLab: the same stable ids, mapped onto GitLab's settings (the token's
scopes, the webhook's triggers and health, "Pipelines must succeed" or an external status check, protected
branches, protected environments, the policy file); a correct setup passes, each gap is reported with a fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper.cli.main import main
from gatekeeper.doctor import CHECK_IDS
from tests.fakegitlab import DEVELOPER, FakeGitLab, FakeGitLabState, admin, running_fake_gitlab
from tests.test_doctor import REPO, check, doctor


def correct_setup(state: FakeGitLabState) -> FakeGitLabState:
    """Pipelines must succeed and an external status check `agentgate`; `main` protected (no direct pushes);
    agentgate's webhook with every trigger; `production` needs an approval; a valid policy."""
    state.add_project(REPO)
    admin.set_merge_settings(state, REPO, only_allow_merge_if_pipeline_succeeds=True)
    state.add_status_check(REPO, "agentgate")
    admin.protect_branch(state, REPO, "main")
    admin.add_hook(state, REPO)
    admin.add_environment(state, REPO, "production", approvals=1)
    admin.add_environment(state, REPO, "review/feature", approvals=None)  # not protected by the policy
    state.add_file(REPO, "main", ".agentgate.yml", "version: 1\n")
    return state


@pytest.fixture
def gitlab(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitLab]:
    state = correct_setup(FakeGitLabState())
    with running_fake_gitlab(state) as gl:
        for name in ("AGENTGATE_GITHUB_APP_ID", "AGENTGATE_GITHUB_PRIVATE_KEY", "AGENTGATE_GITHUB_PRIVATE_KEY_PATH"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AGENTGATE_GITLAB_URL", gl.url)
        monkeypatch.setenv("AGENTGATE_GITLAB_TOKEN", state.token)
        yield gl


def test_a_correct_setup_passes(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0, every id present for the project, the token-wide `permissions` with `repo: null`."""
    code, report = doctor(capsys)
    assert code == 0, report
    assert report["ok"] is True
    assert {c["id"] for c in report["checks"] if c["repo"] == REPO} == set(CHECK_IDS)
    assert {c["id"] for c in report["checks"] if c["repo"] is None} == {"permissions"}
    assert "production" in check(report, "deployment-protection")["message"]


def test_no_merge_gate(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither "Pipelines must succeed" nor an `agentgate` status check: merges ignore the verdict."""
    admin.set_merge_settings(gitlab.state, REPO, only_allow_merge_if_pipeline_succeeds=False)
    gitlab.state.projects[REPO].status_checks.clear()
    code, report = doctor(capsys)
    required = check(report, "required-check")
    assert code == 1 and not required["ok"] and "Pipelines must succeed" in required["fix"]


def test_pipelines_alone_are_not_bound(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """With only "Pipelines must succeed", anyone with the Developer role can post the status: the
    requirement holds but is not bound to agentgate; the fix names the external status check."""
    gitlab.state.projects[REPO].status_checks.clear()
    code, report = doctor(capsys)
    assert code == 1 and check(report, "required-check")["ok"]
    bound = check(report, "check-bound-to-app")
    assert not bound["ok"] and "Status checks" in bound["fix"]


def test_unprotected_default_branch(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """An unprotected default branch fails `required-check` and `no-bypass`."""
    admin.admin_of(gitlab.state).project(REPO).protected_branches.clear()
    code, report = doctor(capsys)
    assert code == 1
    assert not check(report, "required-check")["ok"] and not check(report, "no-bypass")["ok"]


@pytest.mark.parametrize("kwargs, said", [({"push": 40}, "may push"), ({"allow_force_push": True}, "force")])
def test_direct_pushes_are_a_bypass(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str], kwargs: dict[str, Any],
                                    said: str) -> None:
    """Maintainers allowed to push, or force pushes allowed, on the default branch bypass the merge gate."""
    admin.protect_branch(gitlab.state, REPO, "main", **kwargs)
    code, report = doctor(capsys)
    no_bypass = check(report, "no-bypass")
    assert code == 1 and not no_bypass["ok"] and said in no_bypass["message"]
    assert "Protected branches → main" in no_bypass["fix"]


def test_skipped_pipelines_are_a_bypass(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """Relying on pipelines, "skipped pipelines are considered successful" lets a `[ci skip]` commit merge."""
    gitlab.state.projects[REPO].status_checks.clear()
    admin.set_merge_settings(gitlab.state, REPO, allow_merge_on_skipped_pipeline=True)
    code, report = doctor(capsys)
    assert code == 1 and "skipped pipelines" in check(report, "no-bypass")["message"]


def test_production_without_approvals(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """A protected-by-policy environment that is not a protected environment with approvals fails."""
    admin.add_environment(gitlab.state, REPO, "prod-eu", approvals=None)
    code, report = doctor(capsys)
    env = check(report, "deployment-protection")
    assert code == 1 and not env["ok"] and "prod-eu" in env["message"] and "Protected environments" in env["fix"]


def test_webhook_missing_triggers_and_disabled(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """A webhook without the pipeline trigger fails `permissions`; one GitLab disabled fails `deliveries`."""
    hooks = admin.admin_of(gitlab.state).project(REPO).hooks
    hooks[0].update(pipeline_events=False, alert_status="disabled")
    code, report = doctor(capsys)
    assert code == 1
    perms = check(report, "permissions")
    assert not perms["ok"] and "Pipeline events" in perms["message"]
    assert not check(report, "deliveries")["ok"]


def test_group_webhook_counts(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """agentgate's webhook on the project's group serves as well (readable with the Owner role)."""
    state = gitlab.state
    admin.admin_of(state).project(REPO).hooks.clear()
    admin.add_hook(state, REPO, group="acme")
    admin.set_group_owner(state, "acme", state.token_user)
    code, report = doctor(capsys)
    assert code == 0, report


def test_no_webhook(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """No webhook anywhere: nothing is delivered."""
    admin.admin_of(gitlab.state).project(REPO).hooks.clear()
    code, report = doctor(capsys)
    assert code == 1
    assert "Webhooks → Add new webhook" in check(report, "permissions")["fix"]
    assert not check(report, "deliveries")["ok"]


def test_token_without_api_scope(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """A token without the `api` scope fails the token-wide `permissions` check."""
    gitlab.state.token_scopes[gitlab.state.token] = ["read_api"]
    code, report = doctor(capsys)
    perms = check(report, "permissions", None)
    assert code == 1 and not perms["ok"] and "`api`" in perms["message"]


def test_developer_cannot_see_hooks(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """With the Developer role the hooks are unreadable (403): not verified, so not ok, and the message says
    which role would read them."""
    gitlab.state.set_member(REPO, gitlab.state.token_user, DEVELOPER)
    code, report = doctor(capsys)
    perms = check(report, "permissions")
    assert code == 1 and not perms["ok"] and "Maintainer" in perms["message"]


def test_invalid_policy(gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid `.agentgate.yml` fails `policy-valid`."""
    gitlab.state.add_file(REPO, "main", ".agentgate.yml", "version: 7\n")
    code, report = doctor(capsys)
    assert code == 1 and not check(report, "policy-valid")["ok"]


def test_repo_and_bad_token(gitlab: FakeGitLab, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """`--repo` checks one project; a token GitLab refuses means doctor cannot run (exit 2)."""
    code, report = doctor(capsys, "--repo", REPO, "--platform", "gitlab")
    assert code == 0 and {c["repo"] for c in report["checks"]} == {None, REPO}
    monkeypatch.setenv("AGENTGATE_GITLAB_TOKEN", "glpat-wrong")
    assert main(["doctor", "--format", "json"]) == 2
    assert "did not accept the token" in capsys.readouterr().err
