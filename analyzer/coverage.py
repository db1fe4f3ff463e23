"""What was checked: the kind of run, its core checks, and whether they could all run.

A run on which the checks that matter for its kind could not run is not "healthy": its verdict is
``limited``, and the headline says what was not checked and what to log to check it. The rule is
the table ``KINDS`` below (docs/detectors.md, "What was checked"):

* the **kind** is read from the data — completions present; pairwise preference keys
  (``rewards/chosen``, ``logps/chosen``, ``log_odds_ratio`` …) without a sampled reward; RL keys
  (``reward``, ``frac_reward_zero_std``, ``clipped_ratio``, value loss …); else the algorithm the
  run declares; else ``unknown``;
* each kind has **core** checks (all must run) and **optional** ones (run when their signal is
  logged; skipping them is normal, e.g. no ``kl`` when TRL's beta = 0); every other detector does
  not apply to the kind;
* a kind with no kind-specific check (``unknown``) is always ``limited``: only the generic checks
  ran, and the headline says so. A detector registered with ``core_for=(kind,)`` becomes a core
  check of that kind (the preference detectors of ``analyzer.detectors.preference`` are, for
  ``preference``), and such a run can then be ``healthy``;
* a core check that skips with a reason starting ``does not apply`` (e.g. likelihood displacement
  on ORPO, which has no reference model) is not applicable to this run: it is neither counted
  nor hinted.

A core check disabled in the config (``<name>.enabled = false``) is the user's explicit choice: it
is listed as disabled and does not make the run ``limited``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzer import columns as C

if TYPE_CHECKING:
    import polars as pl

    from analyzer.model import Analysis, DetectorStatus, RunData


@dataclass(frozen=True, slots=True)
class KindRule:
    """The core and optional checks of one kind of run."""

    label: str  # how the headline names the kind
    core: tuple[str, ...]
    optional: tuple[str, ...]
    # When the kind has no kind-specific check, why (the headline says it instead of hiding it).
    no_specific: str = ""


# Checks every kind of run needs: a NaN, a divergence and broken logs mean the same everywhere.
GENERIC: tuple[str, ...] = ("nan_values", "loss_spike", "log_integrity")
# What makes an RL run healthy: no hacking, no collapse, no truncation, a learning signal.
_RL_CORE = (
    *GENERIC,
    "reward_hacking",
    "length_hacking",
    "reward_std_collapse",
    "mode_collapse",
    "repetition",
    "truncation",
)
# Run when their signal is logged; absent is normal (TRL GRPO logs no kl when beta = 0, entropy
# only from TRL 0.20, eval/probe prompts only when the user logs them); value_reward_mismatch only
# applies to a run with a critic (see _PPO_SWAP).
_RL_OPTIONAL = (
    "kl_explosion",
    "entropy_collapse",
    "format_regression",
    "value_reward_mismatch",
    "catastrophic_forgetting",
    "semantic_drift",
    "reward_regression",
    "extreme_values",
    "coherence_loss",
)
# PPO (a critic was logged): groups do not exist, the critic must be checked instead.
_PPO_SWAP = ("reward_std_collapse", "value_reward_mismatch")

KINDS: dict[str, KindRule] = {
    "rl_completions": KindRule("GRPO/PPO/RLOO run with completions", _RL_CORE, _RL_OPTIONAL),
    "rl_scalars": KindRule("GRPO/PPO/RLOO run with logged scalars only", _RL_CORE, _RL_OPTIONAL),
    # the preference checks themselves register with core_for=("preference",)
    # (analyzer.detectors.preference: not learning, likelihood displacement, over-optimisation,
    # trivial pairs); without them only the generic checks would run
    "preference": KindRule(
        "preference-optimisation run (DPO/ORPO/CPO/KTO)",
        GENERIC,
        ("entropy_collapse", "catastrophic_forgetting"),
        no_specific="no preference-specific check is registered (DPO not learning, likelihood "
        "displacement, over-optimisation): only the generic checks ran, and no logging adds one",
    ),
    "unknown": KindRule(
        "run of unknown kind",
        GENERIC,
        (),
        no_specific="logscan cannot tell what kind of run this is (no reward, completions or preference "
        "keys), so it does not know which checks matter: log the reward, or completions with trainer_hooks",
    ),
}

# Keys only pairwise preference trainers log (TRL DPO/ORPO/CPO/KTO, LLaMA-Factory).
PREFERENCE_KEYS: tuple[str, ...] = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "log_odds_ratio",
    "log_odds_chosen",
    "odds_ratio_loss",
)
# Keys of a policy-gradient run (after the keymap): a sampled reward and its mechanics.
RL_KEYS: tuple[str, ...] = (
    C.REWARD,
    C.FRAC_REWARD_ZERO_STD,
    C.CLIPPED_RATIO,
    C.COMPLETION_LENGTH,
    C.VALUE_LOSS,
    C.VALUE_EXPLAINED_VARIANCE,
    C.ADVANTAGE_MEAN,
)
CRITIC_KEYS: tuple[str, ...] = (C.VALUE_LOSS, C.VALUE_EXPLAINED_VARIANCE)
PREFERENCE_ALGORITHMS = frozenset({"dpo", "orpo", "cpo", "kto", "ipo", "simpo", "bco", "nca"})
RL_ALGORITHMS = frozenset({"grpo", "ppo", "rloo", "reinforce", "reinforce++", "dapo", "gspo", "remax", "rlaif"})

# What to log to let a skipped detector run: (without completions, with completions). ``None``:
# nothing to log (the reason is shown as it is).
COMPLETIONS = "log completions with trainer_hooks (or TRL's log_completions=True)"
_PREF_KEYS = (
    "log rewards/chosen, rewards/rejected and rewards/margins (TRL's DPO/KTO log them; LLaMA-Factory "
    "writes them to trainer_state.json)"
)
REMEDIES: dict[str, tuple[str | None, str | None]] = {
    "nan_values": ("log the trainer's scalars or completions", None),
    "loss_spike": ("log loss and grad_norm", "log loss and grad_norm"),
    "reward_hacking": (COMPLETIONS, "log ground_truth_answer with each completion (or an eval accuracy)"),
    "length_hacking": (COMPLETIONS, "log each completion's reward"),
    "kl_explosion": ("log kl (TRL: beta > 0)", "log kl (TRL: beta > 0)"),
    "entropy_collapse": ("log entropy (TRL ≥ 0.20 does)", "log entropy (TRL ≥ 0.20 does)"),
    "reward_std_collapse": (COMPLETIONS, "log each completion's group_id (or question_id)"),
    "mode_collapse": (COMPLETIONS, None),
    "repetition": (COMPLETIONS, None),
    "coherence_loss": (COMPLETIONS, None),
    "format_regression": (COMPLETIONS, None),
    "truncation": (COMPLETIONS, None),
    "value_reward_mismatch": ("log value_loss or explained_variance", "log value_loss or explained_variance"),
    "catastrophic_forgetting": (
        "log eval or probe prompts' completions (split eval/probe) or eval metrics",
        "log eval or probe prompts' completions (split eval/probe) or eval metrics",
    ),
    "semantic_drift": (COMPLETIONS, "log the same prompts at several steps"),
    "reward_regression": ("log the reward (or an eval score)", "log each completion's reward"),
    "extreme_values": (
        "log clipped_ratio, entropy and grad_norm (TRL's GRPO does)",
        "log clipped_ratio, entropy and grad_norm (TRL's GRPO does)",
    ),
    "preference_not_learning": (_PREF_KEYS, _PREF_KEYS),
    "likelihood_displacement": (_PREF_KEYS, _PREF_KEYS),
    "preference_overoptimisation": (
        "log rewards/margins beside rewards/accuracies (TRL DPO/ORPO/CPO do), or an eval set (eval_strategy)",
        "log rewards/margins beside rewards/accuracies (TRL DPO/ORPO/CPO do), or an eval set (eval_strategy)",
    ),
    "preference_trivial_pairs": ("log rewards/accuracies (TRL DPO/ORPO/CPO do)", "log rewards/accuracies (TRL DPO/ORPO/CPO do)"),
}
# Skip reasons that no logging fixes (the run is too short, the user disabled it, a bug).
_NOT_ABOUT_INPUT = ("run too short", "too few points", "disabled in config", "internal error")
# A skip reason with this start: the check does not apply to this run (its trainer's keys do not
# mean what the check assumes, e.g. likelihood displacement on ORPO). Not counted, not hinted.
NOT_APPLICABLE = "does not apply"


@dataclass(frozen=True, slots=True)
class Hint:
    """What to log (``log``) and the checks it would enable."""

    log: str
    enables: tuple[str, ...]

    def text(self) -> str:
        n = len(self.enables)
        what = self.enables[0] if n == 1 else f"{n} more checks ({', '.join(self.enables)})"
        return f"{self.log} to enable {what}"


@dataclass(frozen=True, slots=True)
class Coverage:
    """The run's kind, its core checks, which ran, and what to log for the rest."""

    kind: str
    kind_reason: str
    core: tuple[str, ...]
    ran: tuple[str, ...]
    not_run: tuple[tuple[str, str], ...]  # (core check, why it did not run)
    disabled: tuple[str, ...]  # core checks disabled in the config (not counted against the run)
    optional_ran: tuple[str, ...]
    not_applicable: tuple[str, ...]
    hints: tuple[Hint, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return KINDS[self.kind].label

    @property
    def no_specific(self) -> str:
        """Why the kind has no kind-specific check ("" when it has)."""
        return "" if self._has_specific else KINDS[self.kind].no_specific

    @property
    def _has_specific(self) -> bool:
        return any(c not in GENERIC for c in (*self.core, *self.disabled))

    @property
    def limited(self) -> bool:
        """True when a core check could not run, or the kind has no kind-specific check."""
        return bool(self.not_run) or not self._has_specific

    @property
    def counts(self) -> str:
        return f"{len(self.ran)} of {len(self.core)} core checks"

    def summary(self) -> str:
        """e.g. ``9 of 9 core checks for a RL run … ran``."""
        return f"{self.counts} for a {self.label} ran"

    def headline(self) -> str:
        """One sentence: what was checked, what not, and what to log to check it."""
        parts = [self.summary()]
        if self.not_run:
            parts.append("not checked: " + ", ".join(name for name, _ in self.not_run))
            # why, for the ones no logging would fix (too short, too few points, a crash)
            hinted = {n for h in self.hints for n in h.enables}
            why: dict[str, list[str]] = {}
            for name, reason in self.not_run:
                if name not in hinted:
                    why.setdefault(reason, []).append(name)
            parts += [f"{', '.join(names)}: {reason}" for reason, names in why.items()]
        if self.disabled:
            parts.append("disabled: " + ", ".join(self.disabled))
        if self.no_specific:
            parts.append(self.no_specific)
        # the hints that would let a core check run; only when there are none, the optional ones
        # (all of them are in analysis.json and the reports)
        shown = self.core_hints() or self.hints
        if shown:
            parts.append("; ".join(h.text() for h in shown))
        return "; ".join(parts)

    def core_hints(self) -> tuple[Hint, ...]:
        return tuple(h for h in self.hints if any(n in self.core for n in h.enables))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "kind_label": self.label,
            "kind_reason": self.kind_reason,
            "core": list(self.core),
            "ran": list(self.ran),
            "not_run": [{"name": n, "reason": r} for n, r in self.not_run],
            "disabled": list(self.disabled),
            "optional_ran": list(self.optional_ran),
            "not_applicable": list(self.not_applicable),
            "hints": [{"log": h.log, "enables": list(h.enables), "text": h.text()} for h in self.hints],
            "limited": self.limited,
            "headline": self.headline(),
        }


def _present(frame: pl.DataFrame | None, names: Iterable[str]) -> set[str]:
    """Which of ``names`` (or their ``eval/`` twins) hold at least one value in ``frame``."""
    if frame is None:
        return set()
    found: set[str] = set()
    columns = set(frame.columns)  # once: frame.columns is a new list per call
    for name in names:
        for col in (name, *(prefix + name for prefix in C.SPLIT_PREFIXES)):
            if col in columns and frame.get_column(col).null_count() < frame.height:
                found.add(name)
                break
    return found


def _columns(metrics: pl.DataFrame | None, run: RunData) -> set[str]:
    """The kind-deciding keys the run logged (a value at some step), eval ones by their bare name."""
    wanted = {*PREFERENCE_KEYS, *RL_KEYS, *CRITIC_KEYS}
    found = _present(metrics, wanted) | _present(run.steps, wanted)
    for frame in (metrics, run.steps):
        if frame is not None:
            rewards = [c for c in frame.columns if c.startswith(C.REWARD_PREFIX) and not c.endswith("/std")]
            found |= _present(frame, rewards[:20])
    return found


def run_kind(run: RunData, metrics: pl.DataFrame | None = None) -> tuple[str, str, bool]:
    """``(kind, what decided it, has a critic)`` from the run's data (see the module docstring)."""
    cols = _columns(metrics, run)
    gens = run.generations
    has_completions = gens is not None and gens.height > 0 and C.OUTPUT in gens.columns
    algorithm = str(run.info.get("algorithm") or "").lower()
    critic = any(k in cols for k in CRITIC_KEYS) or algorithm == "ppo"
    pref = [k for k in PREFERENCE_KEYS if k in cols]
    rl = [k for k in RL_KEYS if k in cols] + sorted(c for c in cols if c.startswith(C.REWARD_PREFIX))[:1]
    if has_completions:
        return "rl_completions", f"{gens.height if gens is not None else 0} completions logged", critic
    if pref and C.REWARD not in cols:
        return "preference", "preference keys logged: " + ", ".join(pref[:3]), False
    if rl:
        return "rl_scalars", "RL keys logged without completions: " + ", ".join(rl[:3]), critic
    if algorithm in PREFERENCE_ALGORITHMS:
        return "preference", f"algorithm {algorithm} (run info)", False
    if algorithm in RL_ALGORITHMS:
        return "rl_scalars", f"algorithm {algorithm} (run info), no completions", critic
    return "unknown", "no completions, reward or preference keys logged", False


def core_checks(kind: str, *, critic: bool = False, registry: Iterable[Any] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(core, optional)`` check names for ``kind``; a PPO run (``critic``) swaps the GRPO group
    check for the critic check; ``registry`` specs declaring ``core_for`` this kind join the core."""
    rule = KINDS[kind]
    core, optional = list(rule.core), list(rule.optional)
    if kind.startswith("rl_"):
        group, value = _PPO_SWAP
        if critic:
            core = [value if c == group else c for c in core]
            optional = [group if c == value else c for c in optional]
        else:  # GRPO/RLOO have no critic to check
            optional.remove(value)
    for spec in registry:
        if kind in getattr(spec, "core_for", ()) and spec.name not in core:
            core.append(spec.name)
            if spec.name in optional:
                optional.remove(spec.name)
    return tuple(core), tuple(optional)


def assess(
    run: RunData,
    metrics: pl.DataFrame | None,
    statuses: Iterable[DetectorStatus],
    *,
    registry: Mapping[str, Any] | None = None,
) -> Coverage:
    """The coverage of one analysed run: its kind, which core checks ran, what to log for the rest."""
    if registry is None:
        from analyzer.detectors import REGISTRY

        registry = REGISTRY
    kind, why, critic = run_kind(run, metrics)
    core, optional = core_checks(kind, critic=critic, registry=registry.values())
    status = {s.name: s for s in statuses}
    # checks that said they do not apply to this run's trainer are neither core nor optional here
    inapplicable = {n for n, s in status.items() if not s.ran and (s.reason or "").startswith(NOT_APPLICABLE)}
    core = tuple(n for n in core if n not in inapplicable)
    optional = tuple(n for n in optional if n not in inapplicable)
    gens = run.generations
    has_completions = gens is not None and gens.height > 0
    ran: list[str] = []
    not_run: list[tuple[str, str]] = []
    disabled: list[str] = []
    for name in core:
        s = status.get(name)
        if s is not None and s.ran:
            ran.append(name)
        elif s is not None and (s.reason or "").startswith("disabled in config"):
            disabled.append(name)
        else:
            not_run.append((name, (s.reason if s is not None else None) or "not run (no status recorded)"))
    applicable = set(core) | set(optional) | {
        n for n in status if n not in REMEDIES and n not in GENERIC and n not in inapplicable
    }
    optional_ran = [n for n in optional if (s := status.get(n)) is not None and s.ran]
    # what to log: every applicable check that was skipped for want of an input, grouped by remedy
    by_remedy: dict[str, list[str]] = {}
    for name, s in status.items():
        if s.ran or name not in applicable or name in disabled:
            continue
        reason = s.reason or ""
        if reason.startswith(_NOT_ABOUT_INPUT):
            continue
        remedy = REMEDIES.get(name, (None, None))[1 if has_completions else 0]
        if remedy is None and name not in REMEDIES:
            remedy = f"provide what {name} needs ({reason})" if reason else None
        if remedy is not None:
            by_remedy.setdefault(remedy, []).append(name)
    # core-enabling hints first, then the biggest
    hints = sorted(
        (Hint(log, tuple(names)) for log, names in by_remedy.items()),
        key=lambda h: (not any(n in core for n in h.enables), -len(h.enables), h.log),
    )
    return Coverage(
        kind=kind,
        kind_reason=why,
        core=core,
        ran=tuple(ran),
        not_run=tuple(not_run),
        disabled=tuple(disabled),
        optional_ran=tuple(optional_ran),
        not_applicable=tuple(n for n in status if n not in applicable),
        hints=tuple(hints),
    )


def coverage_of(analysis: Analysis) -> Coverage:
    """The coverage of an analysed run (cheap: it reads the detectors' statuses and a few columns)."""
    return assess(analysis.run, analysis.metrics, analysis.detectors)


def describe_checks() -> str:
    """``logscan detectors``: every registered detector (``describe_detectors``), then the core
    and optional checks of each kind of run."""
    from analyzer.detectors import REGISTRY, describe_detectors

    lines = ["Core checks per kind of run (all must run, else the verdict is limited; docs/detectors.md)"]
    for kind, rule in KINDS.items():
        core, optional = core_checks(kind, registry=REGISTRY.values())
        lines.append(f"{kind}: {rule.label}")
        lines.append(f"    core:     {', '.join(core)}")
        if optional:
            lines.append(f"    optional: {', '.join(optional)}")
        if rule.no_specific and all(c in GENERIC for c in core):
            lines.append(f"    note:     {rule.no_specific}")
    lines.append("(a run with a critic — PPO — checks value_reward_mismatch instead of reward_std_collapse)")
    return describe_detectors() + "\n" + "\n".join(lines) + "\n"
