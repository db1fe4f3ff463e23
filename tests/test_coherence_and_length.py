"""coherence_loss (completions becoming less coherent) and length_hacking's length_without_accuracy
check: generated twins, the real DAPO rollout log, and no false alarm on healthy runs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from detector_scenarios import make_scenario

from analyzer import columns as C
from analyzer.detectors import run_detectors
from analyzer.detectors.coherence import GIBBERISH, MIXED, TAGS, byte_measures, coherence_frame
from analyzer.features import build_features
from analyzer.metrics import compute_metrics

DAPO = "JuncyLu__trl_DAPO/training_logs__20251022_181457__rollout_results.md"


def analyse(run, drift=None):
    features = build_features(run)
    metrics = compute_metrics(run, features=features)
    alerts, statuses = run_detectors(run, metrics, drift, None, features=features)
    broken = [s for s in statuses if s.reason and s.reason.startswith("internal error")]
    assert not broken, broken
    return alerts, statuses


# ---- the text measures --------------------------------------------------------------------------


def test_byte_measures_match_a_plain_python_count() -> None:
    import math
    from collections import Counter

    texts = ["abc abc", "", None, "所以 the answer", "zzzz"]
    size, letters, entropy = byte_measures(pl.Series("t", texts, dtype=pl.String))
    for i, t in enumerate(texts):
        b = (t or "").encode()
        assert size[i] == len(b)
        assert letters[i] == sum(chr(c).isascii() and chr(c).isalpha() for c in b)
        want = -sum(n / len(b) * math.log2(n / len(b)) for n in Counter(b).values()) if b else 0.0
        assert entropy[i] == pytest.approx(want)


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("first we add the numbers 所以我们需要计算 then carry", MIXED),
        ("we add <;<;<; xkcdqrtz }{>|<&%@ zxcvbnmqw", GIBBERISH),
        ("<answer>\n<answer>B</answer>\n</answer> and more", TAGS),
        ("<ref><correct><step>so we add</step><answer><ref>", TAGS),
    ],
)
def test_each_signal_flags_what_it_names(text: str, flag: str) -> None:
    f = coherence_frame(pl.DataFrame({C.STEP: [1], C.SAMPLE_ID: [0], C.OUTPUT: [text]}), run_tags=("reasoning", "answer"))
    assert f[flag][0], f.row(0, named=True)


@pytest.mark.parametrize(
    "text",
    [
        "<reasoning>Janet has 16 eggs; she eats 3 and bakes with 4, so 16 - 3 - 4 = 9.</reasoning>\n<answer>18</answer>",
        "Let $x = \\frac{1}{2}$, then $$x^2 = \\frac{1}{4}$$ --- and α + β = π.",
        "**Step 1:** compute `a*b`... ----- rhythms, strengths; (a) [b] {c}!",
    ],
)
def test_healthy_text_flags_nothing(text: str) -> None:
    f = coherence_frame(pl.DataFrame({C.STEP: [1], C.SAMPLE_ID: [0], C.OUTPUT: [text]}), run_tags=("reasoning", "answer"))
    assert not any(f[c][0] for c in (MIXED, GIBBERISH, TAGS)), f.row(0, named=True)


# ---- coherence_loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coherence_loss_twin_is_found_at_its_onset(seed: int) -> None:
    sc = make_scenario("coherence_loss", seed=seed, noise=1.0 + seed / 2)
    alerts, _ = analyse(sc.run)
    mine = [a for a in alerts if a.kind == "coherence_loss"]
    assert mine, [(a.kind, a.message) for a in alerts]
    a = mine[0]
    assert abs(a.step - sc.onset) <= 10, a.message
    assert a.evidence["share_affected"] > 0.4
    assert a.evidence["signals"]["mixed scripts"]["after"] > a.evidence["signals"]["mixed scripts"]["before"]
    ids = a.evidence["sample_ids"]
    shown = sc.run.generations.filter(pl.col(C.SAMPLE_ID).is_in(ids))
    assert shown.height == len(ids) > 0 and (shown[C.STEP] >= sc.onset - 10).all()
    # distinct from repetition: the garbled completions do not loop
    assert not [x for x in alerts if x.kind == "repetition" and x.severity.rank >= 1]


def test_real_dapo_rollouts_lose_coherence(real_run) -> None:
    """The real run's completions turn into tag soup (<answer><answer>…</ref></html>) and mix
    scripts: coherence_loss dates it early, with examples from after the onset."""
    run = real_run(DAPO)
    alerts, _ = analyse(run)
    mine = [a for a in alerts if a.kind == "coherence_loss"]
    assert mine, [(a.kind, a.message) for a in alerts]
    a = mine[0]
    assert a.step <= 12 and a.evidence["peak_rolling_median"] >= 0.5
    assert a.evidence["signals"]["unbalanced or nested tags"]["after"] > 0.5
    shown = run.generations.filter(pl.col(C.SAMPLE_ID).is_in(a.evidence["sample_ids"]))
    assert (shown[C.STEP] >= a.step).all()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("noise", [0.5, 2.0])
def test_coherence_loss_is_quiet_on_healthy_twins(seed: int, noise: float) -> None:
    sc = make_scenario(None, seed=seed, noise=noise, with_generations=True)
    alerts, statuses = analyse(sc.run)
    assert next(s for s in statuses if s.name == "coherence_loss").ran
    assert not [a for a in alerts if a.kind == "coherence_loss"]


@pytest.mark.parametrize("name", ["healthy-grpo", "sample-grpo"])
def test_coherence_loss_is_quiet_on_the_shipped_runs(repo_root: Path, name: str) -> None:
    from analyzer.ingest import load_run

    alerts, statuses = analyse(load_run(repo_root / "examples" / "runs" / name))
    assert next(s for s in statuses if s.name == "coherence_loss").ran
    assert not [a for a in alerts if a.kind == "coherence_loss"]


def test_coherence_loss_without_completions_is_skipped() -> None:
    sc = make_scenario(None, seed=0, with_generations=False)
    _, statuses = analyse(sc.run)
    st = next(s for s in statuses if s.name == "coherence_loss")
    assert not st.ran and "completions" in st.reason


# ---- length growing without accuracy ------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_without_accuracy_twin_warns_though_the_reward_barely_moved(seed: int) -> None:
    sc = make_scenario("length_without_accuracy", seed=seed, noise=1.0 + seed / 2)
    alerts, _ = analyse(sc.run)
    mine = [a for a in alerts if a.kind == "length_hacking" and a.evidence.get("check") == "length_without_accuracy"]
    assert mine, [(a.kind, a.message) for a in alerts]
    a = mine[0]
    assert a.severity.value == "warning" and abs(a.step - sc.onset) <= 10
    assert a.evidence["growth"] >= 2 and a.evidence["accuracy_gain"] <= 0.08


def test_length_growth_with_accuracy_is_not_flagged() -> None:
    """Longer and more accurate is reasoning growing: the same length growth with accuracy rising
    20 points raises nothing."""
    sc = make_scenario("length_without_accuracy", seed=0)
    gens = sc.run.generations
    late = pl.col(C.STEP) >= sc.onset + 30
    flip = late & (pl.col(C.SAMPLE_ID) % 3 == 0) & pl.col(C.OUTPUT).str.contains("<answer>", literal=True)
    gens = gens.with_columns(
        pl.when(flip)
        .then(pl.col(C.OUTPUT).str.replace(r"<answer>.*</answer>", "<answer>" + pl.col(C.GROUND_TRUTH) + "</answer>"))
        .otherwise(pl.col(C.OUTPUT))
        .alias(C.OUTPUT),
        pl.when(flip).then(pl.col(C.GROUND_TRUTH)).otherwise(pl.col(C.ANSWER)).alias(C.ANSWER),
    )
    sc.run.generations = gens
    acc = compute_metrics(sc.run).filter(pl.col(C.STEP) >= sc.onset - 20)
    before = acc.filter(pl.col(C.STEP) < sc.onset)[C.GEN_ACCURACY].mean()
    after = acc.filter(pl.col(C.STEP) >= sc.onset + 50)[C.GEN_ACCURACY].mean()
    assert after - before > 0.1  # the twin's accuracy did rise
    alerts, _ = analyse(sc.run)
    assert [a for a in alerts if a.kind == "length_hacking"] == [] or all(
        a.evidence.get("check") != "length_without_accuracy" for a in alerts
    )


def test_real_dapo_rollouts_grow_without_accuracy(real_run) -> None:
    """The real run's completions grow ~3× while logscan's own accuracy falls."""
    alerts, _ = analyse(real_run(DAPO))
    mine = [a for a in alerts if a.evidence.get("check") == "length_without_accuracy"]
    assert mine, [(a.kind, a.message) for a in alerts]
    assert mine[0].evidence["growth"] >= 2 and mine[0].evidence["accuracy_gain"] < 0
