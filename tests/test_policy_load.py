"""Loading `.agentgate.yml`: errors as values with line:col, safe YAML, extends and precedence, caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.cli.main import main
from gatekeeper.policy import DEFAULT_POLICY, ConfigError, InvalidPolicy, Policy, load_policy
from gatekeeper.policy.load import check_policy, org_refs

BROKEN = Path(__file__).parent / "fixtures" / "policies" / "broken"

EXPECTED = {
    "absolute-glob.yml": "3:5: sensitive_paths[0]: '/etc/**': paths and branches are relative; drop the leading '/'",
    "allow-any-path.yml": "4:14: rules[0].when.paths: an allow rule must use only_paths (every changed path), not "
                          "paths (some changed path), or unrelated files changed alongside would be allowed too",
    "bad-regex.yml": "5:14: rules[0].when.title: invalid regular expression '([a': unterminated character set at "
                     "position 3",
    "billion-laughs.yml": "2:26: the document expands to more than 20000 values",
    "duplicate-key.yml": "2:1: duplicate key 'version' (first at line 1)",
    "merge-key.yml": "4:3: merge keys (<<) are not supported; write the values out",
    "no-version.yml": "1:1: top level: missing required key 'version'",
    "not-a-number.yml": "3:13: approvals.required: Input should be a valid integer, unable to parse string as an "
                        "integer",
    "remove-not-inherited.yml": "3:12: sensitive_paths: cannot remove 'secrets/**': it is not inherited",
    "two-outcomes.yml": "3:5: rules[0]: a rule needs exactly one of allow, require, block (found allow, block)",
    "unknown-key.yml": "3:3: approvals: unknown key 'requird' (did you mean 'required'?)",
    "unknown-preset.yml": "2:10: extends[0]: unknown preset 'preset:lenient'; the presets are preset:default, "
                          "preset:strict, preset:dependency-bots, preset:coding-agents",
    "unknown-team.yml": "5:19: rules[0].require.reviewers[0]: unknown team 'security'; define it under `teams:`",
    "yaml-boolean.yml": "4:21: task.approved_labels[0]: Input should be a valid string (YAML reads an unquoted "
                        "false/yes/no/on/off as a boolean: quote it)",
    "yaml-syntax.yml": "4:10: expected ',' or '}', but got ':' (while parsing a flow mapping at line 3)",
}


def test_every_broken_fixture_has_an_expectation():
    """Each file in tests/fixtures/policies/broken/ is checked below."""
    assert sorted(p.name for p in BROKEN.glob("*.yml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_config_prints_path_line_col(name, capsys):
    """check-config exits 1 and prints `PATH:LINE:COL: message` for YAML and schema errors alike."""
    path = BROKEN / name
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out == f"{path}:{EXPECTED[name]}\n"


def test_check_config_reports_unreadable_files(tmp_path, capsys):
    """A missing file is an error at 1:1, and the other files are still checked."""
    good = tmp_path / "ok.yml"
    good.write_text("version: 1\n")
    assert main(["check-config", str(tmp_path / "missing.yml"), str(good)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{tmp_path / 'missing.yml'}:1:1: cannot read: No such file or directory", f"{good}: ok"]


def test_no_file_is_the_default_and_an_empty_file_is_an_error():
    """No file means the secure default; an empty file is not a policy and is never ignored."""
    assert load_policy(None, source=".agentgate.yml") is DEFAULT_POLICY
    assert load_policy("", source="p.yml") == InvalidPolicy(
        (ConfigError("p.yml", 1, 1, "the file is empty; a policy starts with `version: 1`"),), source="p.yml")
    assert str(load_policy("- a\n", source="p.yml").errors[0]) == (  # type: ignore[union-attr]
        "p.yml:1:1: a policy is a mapping of keys (version, rules, ...)")


def test_yaml_limits(tmp_path):
    """Oversized files, deep nesting, many aliases and non-plain tags are rejected with a position."""
    def first(text: str) -> str:
        result = load_policy(text, source="p.yml")
        assert isinstance(result, InvalidPolicy)
        return str(result.errors[0])

    assert first("version: 1\n#" + "x" * 70000) == "p.yml:1:1: the file is 70012 bytes; the limit is 65536"
    assert first("version: 1\nx: " + "[" * 30 + "]" * 30 + "\n") == "p.yml:2:27: nested deeper than 24 levels"
    aliases = "version: 1\na: &a x\nb: [" + ", ".join(["*a"] * 70) + "]\n"
    assert first(aliases) == "p.yml:3:261: more than 64 aliases"
    assert first("version: 1\nx: !!python/object:os.system ls\n") == (
        "p.yml:2:4: unsupported tag 'tag:yaml.org,2002:python/object:os.system'")
    assert first("version: 1\n1: x\n") == "p.yml:2:1: keys must be strings: quote '1' (YAML reads it as a int)"


def test_list_edits_add_and_remove():
    """A list written as {add, remove} edits what is inherited instead of replacing it."""
    p = load_policy("version: 1\nsensitive_paths: {add: ['secrets/**'], remove: [charts/**]}\n", source="p")
    assert isinstance(p, Policy)
    assert "secrets/**" in p.sensitive_paths.patterns and "charts/**" not in p.sensitive_paths.patterns
    assert ".github/workflows/**" in p.sensitive_paths.patterns
    replaced = load_policy("version: 1\nsensitive_paths: ['secrets/**']\n", source="p")
    assert isinstance(replaced, Policy) and replaced.sensitive_paths.patterns == ("secrets/**",)


ORG = """version: 1
extends: preset:coding-agents
teams:
  security: [sam]
approvals: {required: 2, min_permission: maintain}
protected_branches: [main, "release/**"]
rules:
  - name: org-hold
    when: {labels: [hold]}
    block: Held by the organisation
"""


def test_extends_org_precedence():
    """Precedence: built-in default < extends in order (presets, then org) < the file; rules accumulate."""
    repo = ("version: 1\nextends: [org:.github]\napprovals: {required: 1}\n"
            "rules:\n  - name: repo-sec\n    when: {paths: ['auth/**']}\n    require: {reviewers: [team:security]}\n")
    p = load_policy(repo, source=".agentgate.yml", extends={"org:.github": ORG})
    assert isinstance(p, Policy), p
    assert p.layers == ("preset:coding-agents", "org:.github", ".agentgate.yml")
    assert p.approvals == 1 and p.min_permission == "maintain"
    assert p.protected_branches.patterns == ("main", "release/**")
    assert [r.name for r in p.rules] == ["agents-use-their-own-branches", "agent-workflow-changes-need-a-human",
                                         "agents-stay-in-this-repository", "org-hold", "repo-sec"]
    assert [r.origin for r in p.rules][-2:] == ["org:.github/.agentgate.yml", ".agentgate.yml"]
    assert p.rules[-1].reviewers == ("sam",)


def test_extends_org_must_be_fetched_and_exist():
    """An org file that was not fetched, or does not exist, makes the policy invalid: never half a policy."""
    text = "version: 1\nextends: org:.github\n"
    assert str(load_policy(text, source="p").errors[0]) == "p:2:10: extends org:.github, which was not fetched"  # type: ignore[union-attr]
    missing = load_policy(text, source="p", extends={"org:.github": None})
    assert str(missing.errors[0]) == (  # type: ignore[union-attr]
        "p:2:10: extends org:.github, but the organisation's .github repository has no .agentgate.yml")
    broken = load_policy(text, source="p", extends={"org:.github": "version: 1\napprovals: {required: x}\n"})
    assert str(broken.errors[0]) == (  # type: ignore[union-attr]
        "org:.github/.agentgate.yml:2:23: approvals.required: Input should be a valid integer, unable to parse "
        "string as an integer")
    chained = load_policy(text, source="p", extends={"org:.github": "version: 1\nextends: org:other\n"})
    assert str(chained.errors[0]) == (  # type: ignore[union-attr]
        "org:.github/.agentgate.yml:2:10: only a repository's own policy may extend org: files")


def test_org_refs_and_check_policy_skip_unfetched_org_files():
    """The worker learns what to fetch from org_refs; check-config validates the file alone."""
    text = "version: 1\nextends: [preset:strict, org:.github, org:policies]\n"
    assert org_refs(text) == ("org:.github", "org:policies")
    assert org_refs("not: [valid") == () and org_refs(None) == ()
    assert check_policy(text, source="p") == []


def test_loading_is_cached_per_text():
    """The same text compiles once: the same Policy object comes back."""
    text = "version: 1\nrules:\n  - when: {actor: agent}\n    block: cached\n"
    assert load_policy(text, source="p") is load_policy(text, source="p")


def test_rule_names_must_be_unique_within_a_file():
    """Two rules with one name in a file is an error at the second name."""
    text = ("version: 1\nrules:\n  - name: a\n    when: {actor: bot}\n    block: x\n"
            "  - name: a\n    when: {actor: agent}\n    block: y\n")
    assert str(load_policy(text, source="p").errors[0]) == (  # type: ignore[union-attr]
        "p:6:11: rules[1].name: 'a' is already the name of rules[0]")


def test_unconditional_allow_is_refused():
    """An allow rule without conditions would switch agentgate off, so it is an error."""
    text = "version: 1\nrules:\n  - allow: everything\n"
    assert str(load_policy(text, source="p").errors[0]) == (  # type: ignore[union-attr]
        "p:3:5: rules[0]: an allow rule needs `when` conditions; an unconditional allow would lift every approval "
        "requirement")
