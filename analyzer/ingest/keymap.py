"""The ONE table from each library's logged keys to logscan's canonical metric names.

Every reader (logscan events, HF ``trainer_state.json``, TRL/verl console logs, verl's file
logger, LLaMA-Factory) passes its keys through :func:`canonical_key`, so a TRL ``kl`` and a verl
``actor/kl_loss`` both land in the ``kl`` column and detectors read one name. Keys no rule knows
keep their own name (and are listed in ``IngestReport.unknown_keys``); they are never dropped.

``docs/formats.md`` embeds :func:`markdown_table`; ``tests/test_ingest_docs.py`` keeps it in sync.
Regenerate with ``python -m analyzer.ingest.keymap``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from analyzer import columns as C


@dataclass(frozen=True, slots=True)
class KeyRule:
    """``key`` (exact, or a regex when ``pattern``) → ``canonical`` (``{1}`` = first regex group)."""

    library: str
    key: str
    canonical: str
    note: str = ""
    pattern: bool = False


# Order matters: when two keys of one record map to the same canonical name, the earlier rule wins
# and the later key keeps its own name (e.g. TRL's old ``completion_length`` and new
# ``completions/mean_length`` are both logged by some versions).
KEYMAP: Final[tuple[KeyRule, ...]] = (
    # --- TRL GRPO (trl/trainer/grpo_trainer.py `_metrics`), new and old names -----------------
    KeyRule("trl-grpo", "reward", C.REWARD, "mean total reward of the step's completions"),
    KeyRule("trl-grpo", "reward_std", C.REWARD_STD),
    KeyRule("trl-grpo", "kl", C.KL, "absent when beta = 0"),
    KeyRule("trl-grpo", "entropy", C.ENTROPY),
    KeyRule("trl-grpo", "loss", C.LOSS),
    KeyRule("trl-grpo", "policy_loss", C.POLICY_LOSS),
    KeyRule("trl-grpo", "grad_norm", C.GRAD_NORM),
    KeyRule("trl-grpo", "learning_rate", C.LEARNING_RATE),
    KeyRule("trl-grpo", "epoch", C.EPOCH),
    KeyRule("trl-grpo", "completions/mean_length", C.COMPLETION_LENGTH, "TRL ≥ 0.15"),
    KeyRule("trl-grpo", "completion_length", C.COMPLETION_LENGTH, "TRL < 0.15"),
    KeyRule("trl-grpo", "completions/clipped_ratio", C.CLIPPED_RATIO),
    KeyRule("trl-grpo", "frac_reward_zero_std", C.FRAC_REWARD_ZERO_STD),
    KeyRule("trl-grpo", "clip_ratio/region_mean", C.CLIP_FRACTION, "TRL ≥ 0.18"),
    KeyRule("trl-grpo", "clip_ratio", C.CLIP_FRACTION, "TRL < 0.18"),
    KeyRule("trl-grpo", r"rewards/(?!chosen$|rejected$|margins$|accuracies$)(.+)/mean",
            C.REWARD_PREFIX + "{1}", "per reward function, TRL ≥ 0.16", pattern=True),
    KeyRule("trl-grpo", r"rewards/(?!chosen/|rejected/|margins/|accuracies/)(.+)/std",
            C.REWARD_PREFIX + "{1}/std", "per reward function, TRL ≥ 0.16", pattern=True),
    KeyRule("trl-grpo", r"rewards/(?!chosen$|rejected$|margins$|accuracies$)([^/]+)",
            C.REWARD_PREFIX + "{1}", "per reward function, TRL < 0.16", pattern=True),
    # --- TRL PPO / RLOO (trl ppo_trainer.py / rloo_trainer.py) ---------------------------------
    KeyRule("trl-ppo", "objective/rlhf_reward", C.REWARD, "score minus KL penalty"),
    KeyRule("trl-ppo", "objective/kl", C.KL),
    KeyRule("trl-ppo", "objective/entropy", C.ENTROPY),
    KeyRule("trl-ppo", "policy/clipfrac_avg", C.CLIP_FRACTION),
    KeyRule("trl-ppo", "loss/policy_avg", C.POLICY_LOSS),
    KeyRule("trl-ppo", "loss/value_avg", C.VALUE_LOSS),
    KeyRule("trl-ppo", "lr", C.LEARNING_RATE),
    # --- verl (verl/trainer/ppo/metric_utils.py, dp_actor.py, dp_critic.py) --------------------
    KeyRule("verl", "critic/score/mean", C.REWARD, "sequence score (verifier reward) mean"),
    KeyRule("verl", "critic/score/std", C.REWARD_STD),
    KeyRule("verl", "actor/kl_loss", C.KL, "use_kl_loss=True"),
    KeyRule("verl", "actor/reward_kl_penalty", C.KL, "KL in the reward"),
    KeyRule("verl", "actor/entropy", C.ENTROPY),
    KeyRule("verl", "actor/entropy_loss", C.ENTROPY, "older verl: the entropy value"),
    KeyRule("verl", "actor/pg_loss", C.POLICY_LOSS),
    KeyRule("verl", "actor/pg_clipfrac", C.CLIP_FRACTION),
    KeyRule("verl", "critic/vf_loss", C.VALUE_LOSS),
    KeyRule("verl", "actor/grad_norm", C.GRAD_NORM),
    KeyRule("verl", "actor/lr", C.LEARNING_RATE),
    KeyRule("verl", "critic/vf_explained_var", C.VALUE_EXPLAINED_VARIANCE),
    KeyRule("verl", "critic/advantages/mean", C.ADVANTAGE_MEAN),
    KeyRule("verl", "response_length/mean", C.COMPLETION_LENGTH),
    KeyRule("verl", "response_length/clip_ratio", C.CLIPPED_RATIO),
    KeyRule("verl", "training/epoch", C.EPOCH),
    KeyRule("verl", r"val-(?:core|aux)/(.+)", "eval/{1}", "validation metrics", pattern=True),
    # --- LLaMA-Factory trainer_log.jsonl -------------------------------------------------------
    KeyRule("llamafactory", "current_steps", C.STEP, "the step, not a metric"),
)

# Keys that are understood but have no canonical name: kept under their own name and not listed
# as unknown. Regexes, matched in full.
KNOWN_AS_IS: Final[tuple[str, ...]] = (
    r"num_tokens", r"step_time", r"completions/.+", r"clip_ratio/.+", r"sampling/.+",
    r"tools/.+", r"entropy_coef", r"aux_loss", r"cispo_clip_ratio", r"vespo/.+",
    r"total_flos", r"num_input_tokens_seen", r"mean_token_accuracy",
    # TRL's profiling timings (trl/extras/profiling.py), logged to W&B, MLflow and Trackio only
    r"profiling/.+",
    # TRL DPO / ORPO / KTO: plain scalars
    r"rewards/(chosen|rejected|margins|accuracies)", r"logps/.+", r"logits/.+",
    r"nll_loss", r"sft_loss", r"odds_ratio_loss", r"log_odds_ratio", r"log_odds_chosen",
    r"accuracy", r"runtime", r"samples_per_second", r"steps_per_second",
    # TRL PPO / RLOO rest
    r"objective/.+", r"policy/.+", r"val/.+", r"loss/.+", r"eps", r"episode",
    # verl rest
    r"actor/.+", r"critic/.+", r"response_length/.+", r"prompt_length/.+", r"timing_s/.+",
    r"timing_per_token_ms/.+", r"perf/.+", r"global_seqlen/.+", r"training/.+",
    r"response/aborted_ratio", r"num_turns/.+",
)

_EXACT: Final = {r.key: (i, r) for i, r in enumerate(KEYMAP) if not r.pattern}
# A key that already is a canonical name (``clipped_ratio``, ``policy_loss``, … logged under logscan's
# own names by a custom callback) is understood: the detectors read it as it is.
_CANONICAL: Final = frozenset(r.canonical for r in KEYMAP if not r.pattern and r.canonical != C.STEP)
_PATTERNS: Final = [(i, re.compile(r.key), r) for i, r in enumerate(KEYMAP) if r.pattern]
_KNOWN_RE: Final = re.compile("|".join(f"(?:{k})" for k in KNOWN_AS_IS))
_EVAL_PREFIXES: Final = ("eval_", "eval/")


def _lookup(key: str) -> tuple[int, str] | None:
    hit = _EXACT.get(key)
    if hit is not None:
        return hit[0], hit[1].canonical
    for i, rx, rule in _PATTERNS:
        m = rx.fullmatch(key)
        if m:
            return i, rule.canonical.replace("{1}", m.group(1))
    return None


@lru_cache(maxsize=1 << 14)  # a run logs the same few dozen keys on every record
def canonical_key(key: str) -> tuple[str, int, bool]:
    """``(canonical name, priority, known)``; lower priority wins a clash in one record.

    ``eval_``-prefixed keys (HF Trainer) become ``eval/<canonical>``.
    """
    for prefix in _EVAL_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            name, prio, known = canonical_key(key[len(prefix) :])
            return (name if name.startswith("eval/") else "eval/" + name), prio, known
    hit = _lookup(key)
    if hit is not None:
        return hit[1], hit[0], True
    return key, len(KEYMAP), key in _CANONICAL or bool(_KNOWN_RE.fullmatch(key))


def map_record(record: dict[str, float | None], *, prefix: str = "") -> tuple[dict[str, float | None], list[str]]:
    """Rename one record's keys to canonical names; returns ``(mapped, unknown keys)``.

    ``prefix`` (``"eval/"``, ``"probe/"``) is put in front of every name of a non-train split.
    """
    chosen: dict[str, tuple[int, str]] = {}
    out: dict[str, float | None] = {}
    unknown: list[str] = []
    for key, value in record.items():
        name, prio, known = canonical_key(key)
        if not known:
            unknown.append(key)
        if prefix and not name.startswith(prefix):
            name = prefix + name.removeprefix("eval/")
        prev = chosen.get(name)
        if prev is not None:
            if prio >= prev[0]:
                # the higher-priority key already owns the canonical name: keep this one under its
                # own name (unless that *is* the canonical name: then it is an alias, dropped)
                own = prefix + key if prefix else key
                if own != name:
                    out[own] = value
                continue
            own = prefix + prev[1] if prefix else prev[1]
            if own != name:
                out[own] = out[name]
        chosen[name] = (prio, key)
        out[name] = value
    return out, unknown


def markdown_table() -> str:
    """The mapping table as Markdown (embedded in docs/formats.md)."""
    lines = ["| library | logged key | canonical name | note |", "|---|---|---|---|"]
    for r in KEYMAP:
        key = f"`{r.key}` (regex)" if r.pattern else f"`{r.key}`"
        key = key.replace("|", "\\|")
        lines.append(f"| {r.library} | {key} | `{r.canonical}` | {r.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table(), end="")
