"""Which pushes start a pipeline, and the reason told to the sender when one does not."""

from __future__ import annotations

from dataclasses import replace

from shipyard.domain.push_triggers import TriggerRules, decide
from shipyard.domain.webhooks import Push

PUSH = Push(ref="refs/heads/main", before="a" * 40, after="b" * 40,
            clone_url="https://github.com/acme/shop.git", repository="acme/shop",
            pusher="octocat", deleted=False,
            changed_paths=frozenset({"apps/gateway/api.py", "README.md"}))

DEFAULTS = TriggerRules.of()


def test_a_push_to_main_starts_a_pipeline_by_default() -> None:
    decision = decide(PUSH, DEFAULTS)
    assert decision.accepted
    assert decision.reason == "branch 'main' matches the trigger branches"


def test_a_push_to_another_branch_is_ignored_naming_the_patterns() -> None:
    decision = decide(replace(PUSH, ref="refs/heads/feature/x"), DEFAULTS)
    assert not decision.accepted
    assert decision.reason == "branch 'feature/x' matches no trigger branch pattern (main)"


def test_branch_patterns_are_globs() -> None:
    rules = TriggerRules.of(branches=["main", "release/*"])
    assert decide(replace(PUSH, ref="refs/heads/release/2.0"), rules).accepted


def test_a_deleted_branch_starts_nothing() -> None:
    decision = decide(replace(PUSH, deleted=True, after="0" * 40), DEFAULTS)
    assert not decision.accepted
    assert decision.reason == "branch 'main' was deleted; a deletion starts nothing"


def test_tags_start_nothing_by_default() -> None:
    decision = decide(replace(PUSH, ref="refs/tags/v1.0"), DEFAULTS)
    assert not decision.accepted
    assert decision.reason == "tag 'v1.0' matches no trigger tag pattern (none set)"


def test_a_tag_matching_a_tag_pattern_starts_a_pipeline() -> None:
    rules = TriggerRules.of(tags=["v*"])
    assert decide(replace(PUSH, ref="refs/tags/v1.0"), rules).accepted
    assert not decide(replace(PUSH, ref="refs/tags/nightly"), rules).accepted


def test_a_tag_is_not_held_to_the_branch_or_path_patterns() -> None:
    rules = TriggerRules.of(branches=[], tags=["v*"], paths=["nothing/**"])
    assert decide(replace(PUSH, ref="refs/tags/v1.0"), rules).accepted


def test_a_tag_named_like_a_branch_pattern_is_still_a_tag() -> None:
    assert not decide(replace(PUSH, ref="refs/tags/main"), DEFAULTS).accepted


def test_another_kind_of_ref_starts_nothing() -> None:
    decision = decide(replace(PUSH, ref="refs/notes/commits"), DEFAULTS)
    assert not decision.accepted
    assert decision.reason == "ref 'refs/notes/commits' is neither a branch nor a tag"


def test_a_push_changing_a_matching_path_starts_a_pipeline() -> None:
    rules = TriggerRules.of(paths=["apps/**"])
    decision = decide(PUSH, rules)
    assert decision.accepted
    assert decision.reason == "branch 'main' matches the trigger branches and paths"


def test_a_push_changing_no_matching_path_is_ignored_listing_what_changed() -> None:
    rules = TriggerRules.of(paths=["apps/**", "!**/*.md"])
    decision = decide(replace(PUSH, changed_paths=frozenset({"README.md", "docs/a.md"})),
                      rules)
    assert not decision.accepted
    assert decision.reason == ("no changed file matches the trigger paths (apps/**, "
                               "!**/*.md); changed: README.md, docs/a.md")


def test_only_excluded_changes_under_a_matching_folder_are_ignored() -> None:
    rules = TriggerRules.of(paths=["apps/**", "!**/*.md"])
    readme_only = replace(PUSH, changed_paths=frozenset({"apps/gateway/README.md"}))
    assert not decide(readme_only, rules).accepted


def test_a_long_list_of_changes_is_cut_in_the_reason() -> None:
    many = frozenset(f"docs/{n:02}.md" for n in range(12))
    decision = decide(replace(PUSH, changed_paths=many), TriggerRules.of(paths=["apps/**"]))
    assert decision.reason.endswith("docs/04.md and 7 more")


def test_a_push_that_cannot_list_its_files_is_not_ignored_for_its_paths() -> None:
    rules = TriggerRules.of(paths=["apps/**"])
    assert decide(replace(PUSH, changed_paths=None), rules).accepted
