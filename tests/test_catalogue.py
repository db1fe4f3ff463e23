"""The metric catalogue (analyzer/catalogue.py): the lists it derives keep the order the reports,
compare and watch showed before it existed, and every entry is well-formed."""

from __future__ import annotations

import pytest

from analyzer import catalogue
from analyzer import columns as C


def _column_names() -> set[str]:
    return {v for k, v in vars(C).items() if k.isupper() and isinstance(v, str)}


def test_key_metrics_in_report_order():
    assert catalogue.KEY == (
        "reward",
        "gen_reward_mean",
        "<reward/*>",
        "<gen_reward/*_mean>",
        "gen_accuracy",
        "gen_answer_coverage",
        "eval/gen_accuracy",
        "eval/gen_reward_mean",
        "eval/reward",
        "probe/gen_accuracy",
        "gen_format_ok",
        "kl",
        "entropy",
        "completion_length",
        "gen_length_tokens_mean",
        "clipped_ratio",
        "reward_std",
        "frac_reward_zero_std",
        "gen_frac_zero_spread_groups",
        "gen_repeated_ngram_rate",
        "loss",
        "grad_norm",
        "drift_train_mean",
        "drift_eval_mean",
        "drift_diversity_step",
    )


def test_core_and_ppo_lists():
    assert catalogue.CORE == (
        "reward",
        "gen_reward_mean",
        "gen_accuracy",
        "gen_format_ok",
        "kl",
        "entropy",
        "loss",
        "completion_length",
        "gen_length_tokens_mean",
        "grad_norm",
        "learning_rate",
    )
    assert catalogue.PPO == (
        "policy_loss",
        "value_loss",
        "explained_variance",
        "clip_fraction",
        "advantage_mean",
        "grad_norm",
        "learning_rate",
        "gen_frac_zero_spread_groups",
    )


def test_compare_and_watch_read_the_catalogue():
    from analyzer.report import compare_view, watch_view

    assert compare_view.KEY_METRICS == catalogue.COMPARE == (
        "reward",
        "gen_reward_mean",
        "gen_accuracy",
        "gen_answer_coverage",
        "eval/gen_accuracy",
        "gen_format_ok",
        "gen_length_chars_mean",
        "completion_length",
        "gen_repeated_ngram_rate",
        "gen_frac_zero_spread_groups",
        "kl",
        "entropy",
        "loss",
        "grad_norm",
        "eval/reward",
    )
    assert watch_view.WATCHED == catalogue.WATCH == (
        "reward",
        "gen_reward_mean",
        "gen_accuracy",
        "gen_answer_coverage",
        "gen_format_ok",
        "gen_length_chars_mean",
        "kl",
        "entropy",
        "loss",
        "grad_norm",
    )


def test_entries_are_well_formed():
    names = _column_names()
    seen: set[str] = set()
    for m in catalogue.ENTRIES:
        assert m.name not in seen, m.name
        seen.add(m.name)
        assert m.label and m.unit, m.name
        assert m.direction in (1, -1, 0)
        assert set(m.views) <= set(catalogue.VIEWS), m.name
        if not m.is_pattern:
            # a canonical column (analyzer.columns), possibly of the eval/probe split
            assert catalogue.bare_name(m.name) in names, m.name
            if m.name != catalogue.bare_name(m.name) and catalogue.bare_name(m.name) in catalogue.BY_NAME:
                assert m.direction == catalogue.BY_NAME[catalogue.bare_name(m.name)].direction, m.name
    for view in catalogue.VIEWS:
        positions = [m.views[view] for m in catalogue.ENTRIES if view in m.views]
        assert sorted(positions) == list(range(1, len(positions) + 1)), view


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("reward", 1),
        ("eval/reward", 1),
        ("gen_reward_p10", 1),
        ("probe/gen_accuracy", 1),
        ("explained_variance", 1),
        ("loss", -1),
        ("value_loss", -1),
        ("eval/gen_repeated_ngram_rate", -1),
        ("clipped_ratio", -1),
        ("drift_outlier_frac", -1),
        ("kl", 0),
        ("entropy", 0),
        ("policy_loss", 0),
        ("learning_rate", 0),
        ("reward/format", 1),
        ("reward/format/std", 0),
        ("gen_reward/format_mean", 1),
        ("gen_reward/format_std", 0),
        ("eval/reward/format", 1),
        ("some_custom_scalar", 0),
        # an eval score under the trainer's own name (verl's val-core/… mapped to eval/…)
        ("eval/openai/gsm8k/reward/mean@1", 1),
        ("eval/openai/gsm8k/acc/mean@4", 1),
        ("eval/openai/gsm8k/reward/std@1", 0),
        ("eval/num_turns/max", 0),
        # a preference pair's implicit rewards have no better direction; its accuracy does
        ("eval/rewards/chosen", 0),
        ("eval/rewards/margins", 0),
        ("eval/rewards/accuracies", 1),
    ],
)
def test_direction_of(name, direction):
    assert catalogue.direction_of(name) == direction


def test_direction_agrees_with_the_json_summary():
    """analysis.json's "best" follows the catalogue's direction for every name the catalogue has."""
    from analyzer.report import data as report_data

    for m in catalogue.ENTRIES:
        if not m.is_pattern:
            assert report_data.metric_direction(m.name) == catalogue.direction_of(m.name), m.name


def test_label_of():
    assert catalogue.label_of("kl") == "KL to reference"
    assert catalogue.label_of("not_in_catalogue") == "not_in_catalogue"


def test_catalogue_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, analyzer.catalogue; print(sorted(m for m in ('polars', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
