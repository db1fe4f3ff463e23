"""The metric catalogue: one entry per canonical metric the reports, ``compare``, ``watch`` and the
JSON summary name — its label, unit, which direction is better, and the lists it belongs to.

The lists (``KEY``, ``CORE``, ``PPO``, ``COMPARE``, ``WATCH``) are derived from the entries, so a
metric is added in one place: give it an entry here (and its column name in ``analyzer.columns``).
Each list has its own order, hence a position per list rather than a flag. Two entries are
patterns rather than names (``<reward/*>``: one row per reward function; see
``analyzer.report.render``'s key-metrics table). This module imports only ``analyzer.columns``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from analyzer import columns as C

Direction = Literal[1, -1, 0]
View = Literal["key", "core", "ppo", "compare", "watch"]
VIEWS: Final[tuple[View, ...]] = ("key", "core", "ppo", "compare", "watch")

HIGHER: Final = 1  # a higher value is the better one ("best" is the max)
LOWER: Final = -1  # a lower value is the better one
NEITHER: Final = 0  # no "better" direction in general (KL, entropy, lengths…): "best" is null


@dataclass(frozen=True, slots=True)
class Metric:
    """One canonical metric. ``views`` maps a list's name to the metric's position in it:
    ``key`` the reports' key-metrics table, ``core`` the metrics a reader expects in any RL run
    (listed as absent when missing), ``ppo`` the PPO mechanics table, ``compare`` the rows of
    ``logscan compare``, ``watch`` the lines of ``logscan watch``."""

    name: str
    label: str
    unit: str = ""
    direction: Direction = NEITHER
    views: Mapping[View, int] = field(default_factory=dict)

    @property
    def is_pattern(self) -> bool:
        return self.name.startswith("<")


def _m(
    name: str, label: str, unit: str = "", direction: Direction = NEITHER, **views: int
) -> Metric:
    return Metric(name, label, unit, direction, views)  # type: ignore[arg-type]


_SHARE = "share of completions"

ENTRIES: Final[tuple[Metric, ...]] = (
    # rewards
    _m(C.REWARD, "logged reward", "reward", HIGHER, key=1, core=1, compare=1, watch=1),
    _m(C.GEN_REWARD_MEAN, "reward (from completions)", "reward", HIGHER, key=2, core=2, compare=2, watch=2),
    _m("<reward/*>", "logged reward per reward function", "reward", HIGHER, key=3),
    _m("<gen_reward/*_mean>", "reward per reward function (from completions)", "reward", HIGHER, key=4),
    _m(C.GEN_REWARD_P10, "reward, 10th percentile (from completions)", "reward", HIGHER),
    _m(C.GEN_REWARD_P50, "reward, median (from completions)", "reward", HIGHER),
    _m(C.GEN_REWARD_P90, "reward, 90th percentile (from completions)", "reward", HIGHER),
    _m(C.REWARD_STD, "logged reward std", "reward", NEITHER, key=17),
    # answers
    _m(C.GEN_ACCURACY, "exact-match accuracy", _SHARE, HIGHER, key=5, core=3, compare=3, watch=3),
    # the accuracy's coverage, listed right after it wherever it is listed
    _m(
        C.GEN_ANSWER_COVERAGE,
        "completions with a readable answer (accuracy coverage)",
        _SHARE,
        HIGHER,
        key=6,
        compare=4,
        watch=4,
    ),
    _m("eval/" + C.GEN_ACCURACY, "exact-match accuracy (eval)", _SHARE, HIGHER, key=7, compare=5),
    _m("eval/" + C.GEN_REWARD_MEAN, "reward (eval completions)", "reward", HIGHER, key=8),
    _m("eval/" + C.REWARD, "logged eval reward", "reward", HIGHER, key=9, compare=15),
    _m("probe/" + C.GEN_ACCURACY, "exact-match accuracy (probe)", _SHARE, HIGHER, key=10),
    _m(C.GEN_FORMAT_OK, "format compliance", _SHARE, HIGHER, key=11, core=4, compare=6, watch=5),
    # policy
    _m(C.KL, "KL to reference", "nats", NEITHER, key=12, core=5, compare=11, watch=7),
    _m(C.ENTROPY, "entropy", "nats", NEITHER, key=13, core=6, compare=12, watch=8),
    # length
    _m(C.COMPLETION_LENGTH, "logged completion length (tokens)", "tokens", NEITHER, key=14, core=8, compare=8),
    _m(C.GEN_LEN_TOKENS, "completion length (whitespace tokens)", "tokens", NEITHER, key=15, core=9),
    _m(C.GEN_LEN_CHARS, "completion length (characters)", "characters", NEITHER, compare=7, watch=6),
    _m(C.CLIPPED_RATIO, "completions cut at max length", _SHARE, LOWER, key=16),
    # learning signal
    _m(C.FRAC_REWARD_ZERO_STD, "logged share of groups with zero reward std", "share of groups", LOWER, key=18),
    _m(C.GEN_ZERO_SPREAD_GROUPS, "groups with zero reward spread", "share of groups", LOWER, key=19, ppo=8, compare=10),
    _m(C.GEN_REPEAT_NGRAM, "repeated n-gram rate", _SHARE, LOWER, key=20, compare=9),
    # optimisation
    _m(C.LOSS, "total loss", "loss", LOWER, key=21, core=7, compare=13, watch=9),
    _m(C.POLICY_LOSS, "policy loss", "loss", NEITHER, ppo=1),
    _m(C.VALUE_LOSS, "value loss", "loss", LOWER, ppo=2),
    _m(C.VALUE_EXPLAINED_VARIANCE, "value explained variance", "share of variance", HIGHER, ppo=3),
    _m(C.CLIP_FRACTION, "clip fraction", "share of tokens", NEITHER, ppo=4),
    _m(C.ADVANTAGE_MEAN, "mean advantage", "advantage", NEITHER, ppo=5),
    _m(C.GRAD_NORM, "grad norm", "L2 norm", NEITHER, key=22, core=10, ppo=6, compare=14, watch=10),
    _m(C.LEARNING_RATE, "learning rate", "learning rate", NEITHER, core=11, ppo=7),
    # drift (analyzer.drift)
    _m(C.DRIFT_TRAIN_MEAN, "drift from baseline (train)", "cosine distance", NEITHER, key=23),
    _m(C.DRIFT_EVAL_MEAN, "drift from baseline (eval/probe)", "cosine distance", NEITHER, key=24),
    # mean pairwise cosine *similarity*: a rise means completions are getting alike
    _m(C.DRIFT_DIVERSITY_GROUP, "within-prompt similarity (↑ = less diverse)", "cosine similarity"),
    _m(C.DRIFT_DIVERSITY_STEP, "within-step similarity (↑ = less diverse)", "cosine similarity", NEITHER, key=25),
    _m(C.DRIFT_OUTLIER_FRAC, "completions unlike any early one", _SHARE, LOWER),
)

BY_NAME: Final[Mapping[str, Metric]] = {m.name: m for m in ENTRIES}


def members(view: View) -> tuple[str, ...]:
    """The names (and patterns) of one list, in its order."""
    return tuple(m.name for m in sorted((m for m in ENTRIES if view in m.views), key=lambda m: m.views[view]))


KEY: Final = members("key")
CORE: Final = members("core")
PPO: Final = members("ppo")
COMPARE: Final = members("compare")
WATCH: Final = members("watch")


def bare_name(name: str) -> str:
    """``name`` without its ``eval/`` or ``probe/`` prefix."""
    for prefix in C.SPLIT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def direction_of(name: str) -> Direction:
    """+1 when higher is better, -1 when lower is better, 0 when neither. A split's metric
    (``eval/…``, ``probe/…``) goes the way of its train metric; a logged or rebuilt reward per
    reward function (``reward/<fn>``, ``gen_reward/<fn>_mean``) is higher-is-better, its ``/std`` not."""
    bare = bare_name(name)
    entry = BY_NAME.get(bare)
    if entry is not None and entry.direction != NEITHER:
        return entry.direction
    if bare.endswith("/std"):
        return NEITHER
    if bare.startswith(C.REWARD_PREFIX) or (bare.startswith("gen_reward/") and bare.endswith("_mean")):
        return HIGHER
    if bare != name and _EVAL_SCORE.search(bare) and not _NOT_A_SCORE.search(bare):
        return HIGHER  # an eval score under the trainer's own name, e.g. verl's val-core/…/reward/mean@1
    return NEITHER


# An eval/probe metric named for a reward, accuracy, score or pass rate (verl's
# ``val-core/openai/gsm8k/reward/mean@1``, ``acc/mean@4``) — its mean, not its spread or a count, and
# not a preference pair's implicit rewards (a falling rejected reward is what DPO is for).
_EVAL_SCORE: Final = re.compile(r"(^|/|_)(rewards?|acc|accuracy|score|pass(@\d+)?|pass_rate)(/|_|@|$)", re.I)
_NOT_A_SCORE: Final = re.compile(
    r"(^|/|_)(std|min|max|n|count|len|length)(@\d+)?$|^rewards/(chosen|rejected|margins)$|^(logps|logits)/|loss", re.I
)


def label_of(name: str) -> str:
    """The human label of a metric, or its name when the catalogue has no entry for it."""
    entry = BY_NAME.get(name)
    return entry.label if entry is not None else name
