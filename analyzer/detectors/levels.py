"""Levels no healthy run reaches, judged on any length (extreme_values).

A trend needs points; a level does not. A 3-step run whose completions are 99.5 % cut at the length
limit, whose entropy is 0.008 and whose gradient is exactly 0 is broken now, whatever the trend
detectors would say with more steps. This detector judges the **state a run is in** — its last
logged points — against levels that mean the same on every run (TRL issue 5697: "clipped_ratio
1.0, reward 0, loss 0, grad_norm 0, frac_reward_zero_std 1" is the most reported silent GRPO
failure). On a run shorter than ``general.min_steps`` it judges every level; on a longer run the
trend detectors own the signals they judge (``truncation``, ``reward_std_collapse``,
``entropy_collapse``) and this one adds only what they cannot see: a zero gradient that
persists, a format reward that was 0 at every step, an entropy near zero from the first steps.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import component_columns
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.detectors.headline import pct
from analyzer.model import Alert, Severity

_FORMAT = re.compile(r"format", re.I)


def _tail_run(mask: np.ndarray) -> int:
    """How many points in a row, ending at the last one, satisfy ``mask``."""
    if mask.size == 0 or not mask[-1]:
        return 0
    rev = mask[::-1]
    return int(mask.size if rev.all() else np.argmin(rev))


def _level_alert(
    severity: Severity,
    step: int,
    message: str,
    *,
    check: str,
    signal: str,
    first_evidence_step: int | None = None,
    **fields: Any,
) -> Alert:
    """An extreme_values alert for a level reached at ``step`` (its onset and, unless said, its
    first evidence): check and signal first, ``fields`` after, no sample ids."""
    return alert(
        "extreme_values",
        severity,
        step,
        message,
        check=check,
        signal=signal,
        onset_step=step,
        first_evidence_step=step if first_evidence_step is None else first_evidence_step,
        **fields,
        sample_ids=[],
    )


def _steps(x: np.ndarray, idx: np.ndarray) -> list[int]:
    return [int(s) for s in x[idx][:10]]


@register(
    "extreme_values",
    signals="levels that need no trend, on a run of any length: the share of completions clipped at "
    "the length limit (`clipped_ratio`), `entropy` near zero, `grad_norm` exactly 0 (a loss of 0 alone is normal in GRPO), every "
    "group with zero reward spread (`frac_reward_zero_std`, or rebuilt from the completions), a "
    "format reward of 0 (every step, or at the end of a short run). Judged at the run's last points; "
    "on runs of general.min_steps or more only what no trend detector judges (a zero gradient, "
    "format reward 0 throughout, entropy near zero from the start).",
    defaults={
        "clipped_warning": 0.5,
        "clipped_critical": 0.9,
        "entropy_floor": 0.02,
        "zero_points": 2,
    },
    requires=(
        "any of clipped_ratio, entropy, grad_norm, loss, frac_reward_zero_std, a format reward",
    ),
    severity="clipped share ≥ clipped_warning: warning, ≥ clipped_critical: critical; every group "
    "without reward spread: critical; entropy ≤ entropy_floor: warning, critical when it fell there "
    "from ≥ 10× higher; grad_norm exactly 0 at ≥ zero_points points in a row: warning, critical "
    "when it lasts to the run's end; a format reward of 0: warning.",
)
def extreme_values(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Levels no healthy run reaches (clipping, entropy ~0, zero gradient, no reward spread), on any length."""
    short = ctx.too_short() is not None
    signals = [
        c
        for c in (
            C.CLIPPED_RATIO,
            C.ENTROPY,
            C.GRAD_NORM,
            C.LOSS,
            C.FRAC_REWARD_ZERO_STD,
            C.GEN_ZERO_SPREAD_GROUPS,
        )
        if ctx.has(c)
    ]
    formats = {k: v for k, v in component_columns(ctx).items() if _FORMAT.search(k)}
    if not signals and not formats:
        raise Skip(
            "none of clipped_ratio, entropy, grad_norm, loss, frac_reward_zero_std or a format "
            "reward was logged"
        )
    n = ctx.n_steps
    # the points a level must hold for: the last point of a short run (every point counts), a
    # sustained stretch of a longer one (as the trend detectors' "sustained")
    hold = 1 if short else stats.window_for(max(n, 1), 0.03, 3, 15)
    out: list[Alert] = []

    def at_end(col: str, cond: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
        x, y = ctx.series(col)
        mask = np.asarray(cond(y), dtype=bool)
        k = _tail_run(mask)
        return (x, y, mask, k) if k >= min(hold, y.size) and k > 0 else None

    # --- the share clipped at the length limit (truncation owns it on longer runs) -------------
    if short and ctx.has(C.CLIPPED_RATIO):
        hit = at_end(C.CLIPPED_RATIO, lambda y: y >= float(cfg["clipped_warning"]))
        if hit is not None:
            x, y, _mask, k = hit
            i0 = x.size - k
            crit = float(y[-1]) >= float(cfg["clipped_critical"])
            ip = i0 + int(np.argmax(y[i0:]))
            out.append(
                _level_alert(
                    Severity.CRITICAL if crit else Severity.WARNING,
                    int(x[i0]),
                    f"{pct(y[-1])} of completions were cut at the length limit at step {int(x[-1])}"
                    + (
                        f" (≥ {pct(float(cfg['clipped_warning']))} from step {int(x[i0])}, peak "
                        f"{pct(y[ip])} at step {int(x[ip])})"
                        if k > 1
                        else ""
                    )
                    + ": they never reach an answer",
                    check="clipped",
                    signal=C.CLIPPED_RATIO,
                    peak=float(y[ip]),
                    peak_step=int(x[ip]),
                    last=float(y[-1]),
                    values=[float(v) for v in y[-10:]],
                )
            )

    # --- every group without reward spread (reward_std_collapse owns it on longer runs) --------
    zs = next((c for c in (C.FRAC_REWARD_ZERO_STD, C.GEN_ZERO_SPREAD_GROUPS) if ctx.has(c)), None)
    if short and zs is not None:
        hit = at_end(zs, lambda y: y >= 0.999)
        if hit is not None:
            x, y, _mask, k = hit
            i0 = x.size - k
            out.append(
                _level_alert(
                    Severity.CRITICAL,
                    int(x[i0]),
                    f"every group had zero reward spread from step {int(x[i0])} to step {int(x[-1])} "
                    f"({zs} = 1): no completion was better than another, the advantage is 0 and "
                    "nothing is learned",
                    check="zero_spread",
                    signal=zs,
                    peak=1.0,
                    peak_step=int(x[i0]),
                )
            )

    # --- entropy near zero (entropy_collapse owns a fall from the warm-up on longer runs) ------
    if ctx.has(C.ENTROPY):
        x, y = ctx.series(C.ENTROPY)
        floor = float(cfg["entropy_floor"])
        near = y <= floor
        judged = False
        if short:
            k = _tail_run(near)
            judged = k > 0
            i0 = y.size - k
        else:
            w = ctx.warmup_points(y.size)
            # collapsed before the trend detector's baseline: it has nothing to compare against
            judged = bool(np.median(y[:w]) <= floor) and _tail_run(near) >= hold
            i0 = int(np.argmax(near)) if judged else 0
        if judged:
            fell = float(y[0]) >= 10 * max(float(y[-1]), 1e-12) and i0 > 0
            il = i0 + int(np.argmin(y[i0:]))
            out.append(
                _level_alert(
                    Severity.CRITICAL if fell else Severity.WARNING,
                    int(x[i0]),
                    f"entropy is near zero: {y[-1]:.3g} at step {int(x[-1])}"
                    + (
                        f" (≤ {floor:g} from step {int(x[i0])}, lowest {y[il]:.3g} at step {int(x[il])})"
                        if il != y.size - 1 or i0 != y.size - 1
                        else ""
                    )
                    + (f", down from {y[0]:.3g} at step {int(x[0])}" if fell else "")
                    + ": the policy samples one token sequence, exploration is gone",
                    check="entropy_near_zero",
                    signal=C.ENTROPY,
                    peak=float(y[il]),
                    peak_step=int(x[il]),
                    first=float(y[0]),
                    last=float(y[-1]),
                    floor=floor,
                )
            )

    # --- a gradient of exactly 0, persisting ----------------------------------------------------
    # A GRPO loss of exactly 0 alone is normal (on-policy with beta = 0 the advantages of a group
    # sum to zero: open-r1 issue 239); a gradient norm of exactly 0 is not — nothing was learned.
    # The loss is reported beside it when it is 0 at the same steps.
    need = max(int(cfg["zero_points"]), 1 if short else hold)
    if ctx.has(C.GRAD_NORM):
        x, y = ctx.series(C.GRAD_NORM)
        start, length = stats.longest_run(y == 0.0)
        if y.size >= 2 and length >= max(min(need, y.size), 2):
            steps = x[start : start + length]
            ending = start + length == y.size
            loss_zero: list[int] = []
            if ctx.has(C.LOSS):
                lx, ly = ctx.series(C.LOSS)
                loss_zero = [int(s) for s in lx[(ly == 0.0) & np.isin(lx, steps)]]
            out.append(
                _level_alert(
                    Severity.CRITICAL if ending else Severity.WARNING,
                    int(steps[0]),
                    f"grad_norm is exactly 0 at {length} steps in a row, from step {int(steps[0])} to "
                    f"step {int(steps[-1])}"
                    + (" (the run's last logged step)" if ending else "")
                    + (f", the loss too at {len(loss_zero)} of them" if loss_zero else "")
                    + ": no gradient reached the policy (every group without a reward spread, "
                    "completions cut at the limit, or a frozen model)",
                    check="zero_gradient",
                    signal=C.GRAD_NORM,
                    first_evidence_step=int(steps[min(need, length) - 1]),
                    zero_steps=_steps(x, np.arange(start, start + length)),
                    points=length,
                    until_the_end=ending,
                    loss_zero_steps=loss_zero[:10],
                )
            )

    # --- a format reward of 0 -----------------------------------------------------------------
    for name, col in formats.items():
        x, y = ctx.series(col)
        if y.size < 2:
            continue
        always = bool(np.all(y == 0.0))
        k = _tail_run(y == 0.0)
        ended = short and 0 < k < y.size and bool(np.max(y) > 0)
        if not (always or ended):
            continue
        i0 = 0 if always else y.size - k
        ip = int(np.argmax(y))
        out.append(
            _level_alert(
                Severity.WARNING,
                int(x[i0]),
                (
                    f"the format reward '{name}' is 0 at every logged step ({int(x[0])}–{int(x[-1])}): "
                    "no completion matched the format it checks, or the reward function is broken"
                )
                if always
                else (
                    (
                        f"the format reward '{name}' is 0 at the last step {int(x[-1])}"
                        if k == 1
                        else f"the format reward '{name}' is 0 from step {int(x[i0])} to the last step {int(x[-1])}"
                    )
                    + f" (it was {y[ip]:.3g} at step {int(x[ip])}): the completions lost the format"
                ),
                check="format_zero",
                signal=col,
                peak=float(y[ip]),
                peak_step=int(x[ip]),
            )
        )
    return out
