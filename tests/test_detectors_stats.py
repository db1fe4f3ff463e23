"""Robust statistics behind the detectors (analyzer.detectors.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.detectors import stats


def test_mad_estimates_sigma_and_ignores_outliers():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 2.0, 5000)
    y[:100] = 1e6
    assert stats.mad(y) == pytest.approx(2.0, rel=0.1)
    assert stats.mad(np.array([1.0])) == 0.0
    assert stats.robust_scale(np.zeros(10)) > 0


def test_rolling_median_trailing_and_short_prefix():
    y = np.array([1.0, 100.0, 2.0, 3.0, 4.0])
    out = stats.rolling_median(y, 3)
    assert out.tolist() == [1.0, 50.5, 2.0, 3.0, 3.0]
    assert stats.rolling_median(np.array([]), 5).size == 0


def test_theil_sen_recovers_slope_despite_outliers():
    x = np.arange(100, dtype=float)
    y = 3.0 * x + 7.0
    y[::10] = -1000.0
    slope, intercept = stats.theil_sen(x, y)
    assert slope == pytest.approx(3.0, rel=1e-6)
    assert intercept == pytest.approx(7.0, abs=1e-6)


def test_mann_kendall_rising_falling_and_noise():
    rng = np.random.default_rng(1)
    x = np.arange(200)
    up = stats.trend(x, 0.01 * x + rng.normal(0, 0.1, 200))
    assert up.rising() and up.slope > 0
    down = stats.trend(x, -0.01 * x + rng.normal(0, 0.1, 200))
    assert down.falling()
    flat = stats.trend(x, rng.normal(0, 1, 200))
    assert not flat.rising() and not flat.falling()
    assert stats.mann_kendall(np.ones(10)) == (0.0, 1.0)


@pytest.mark.parametrize("shape", ["step", "ramp", "ramp_then_flat"])
def test_ramp_fit_dates_the_start_of_a_change(shape):
    rng = np.random.default_rng(2)
    x = np.arange(1, 201)
    base = np.zeros(200)
    if shape == "step":
        base[x >= 120] = 5.0
    elif shape == "ramp":
        base = np.clip((x - 120) * 0.1, 0, None)
    else:
        base = np.clip((x - 120) * 0.25, 0, 5.0)
    y = base + rng.normal(0, 0.3, 200)
    onset = stats.onset_step(x, y)
    assert abs(onset - 120) <= 4


def test_onset_never_after_detection_point():
    x = np.arange(50)
    y = np.r_[np.zeros(25), np.ones(25)]
    assert stats.onset_step(x, y, upto=20) <= 20


def test_first_sustained():
    m = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0, 0], dtype=bool)
    assert stats.first_sustained(m, 3) == 4
    assert stats.first_sustained(m, 3, start=5) == 5
    assert stats.first_sustained(m, 5) is None
    # a run that reaches the end counts once it is half the required length
    assert stats.first_sustained(np.array([0, 0, 0, 1, 1, 1], dtype=bool), 6) == 3


def test_robust_z_flags_a_spike_only():
    rng = np.random.default_rng(3)
    y = rng.normal(10, 1, 100)
    y[60] = 40
    z = stats.robust_z(y, 20, min_history=10, floor=0.5 * stats.noise_scale(y))
    assert np.nanargmax(z) == 60 and z[60] > 10
    assert np.nanmax(np.delete(z, 60)) < 6
    assert np.isnan(z[:10]).all()


def test_mann_whitney_sign_and_ties():
    a = np.arange(10, 20, dtype=float)
    b = np.arange(0, 10, dtype=float)
    assert stats.mann_whitney_z(a, b) > 3
    assert stats.mann_whitney_z(b, a) < -3
    assert stats.mann_whitney_z(np.ones(5), np.ones(5)) == 0.0


def test_pearson_constant_is_zero():
    assert stats.pearson(np.ones(5), np.arange(5)) == 0.0
    assert stats.pearson(np.arange(5), np.arange(5)) == pytest.approx(1.0)


def test_mann_whitney_strength_is_exact_for_small_samples():
    """Five points all above seven later ones: the exact one-sided p is 1/C(12,5) = 1/792, z ≈ 3.02
    — significant at z ≥ 3, which the normal approximation (z ≈ 2.84) would miss. Under the null
    hypothesis the exact version does not fire more often than its level says."""
    import math
    from statistics import NormalDist

    import numpy as np

    from analyzer.detectors import stats

    high, low = np.array([10.0, 10.1, 9.9, 10.2, 10.05]), 5 + np.arange(7) * 0.01
    assert stats.mann_whitney_strength(high, low) == pytest.approx(NormalDist().inv_cdf(1 - 1 / math.comb(12, 5)))
    assert stats.mann_whitney_z(high, low) < 3 <= stats.mann_whitney_strength(high, low)
    assert stats.mann_whitney_strength(low, high) == -math.inf  # p = 1
    rng = np.random.default_rng(0)
    rate = np.mean([stats.mann_whitney_strength(rng.normal(size=6), rng.normal(size=8)) >= 3 for _ in range(5000)])
    assert rate <= 0.0025  # level 0.00135, with sampling slack
    big = rng.normal(size=40)
    assert stats.mann_whitney_strength(big, big - 1) == pytest.approx(stats.mann_whitney_z(big, big - 1))


def test_exact_u_distribution_is_computed_once_per_pair_of_sizes():
    """The exact distribution of U depends on the two sample sizes alone: a run with thousands of
    reward columns of one length reuses it (it cost ~4 ms per column at 30 points), and it is the
    distribution itself — it counts every ordering once and is symmetric."""
    import math

    stats._u_counts.cache_clear()
    counts = stats._u_counts(5, 7)
    assert sum(counts) == math.comb(12, 5) and counts == counts[::-1] and len(counts) == 5 * 7 + 1
    assert counts[0] == counts[-1] == 1  # all b's below all a's, or above: one ordering each
    a, b = np.array([3.0, 1.0, 4.0, 1.5, 5.0]), np.array([9.0, 2.0, 6.0, 5.5, 3.5, 8.0, 9.7])
    first = stats.mann_whitney_strength(a, b)
    for _ in range(50):
        assert stats.mann_whitney_strength(a, b) == first
    assert stats._u_counts(5, 7) is counts and stats._u_counts.cache_info().misses == 1


@pytest.mark.parametrize("ties", [False, True])
def test_mann_whitney_z_columns_equals_one_column_at_a_time(ties):
    """The vectorised test judges thousands of reward functions at once: each column must get
    exactly the z of the one-column test, ties and degenerate sizes included."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        n1, n2, k = (int(v) for v in rng.integers(0, 12, 3))
        k += 1
        draw = (lambda n: rng.integers(0, 3, (n, k)).astype(float)) if ties else (lambda n: rng.normal(size=(n, k)))
        a, b = draw(n1), draw(n2)
        z = stats.mann_whitney_z_columns(a, b)
        assert z.shape == (k,)
        np.testing.assert_allclose(z, [stats.mann_whitney_z(a[:, j], b[:, j]) for j in range(k)], atol=1e-12)


def test_mann_whitney_strength_of_a_perfect_separation_of_large_samples_is_finite() -> None:
    # exact p = 1 / C(60, 20) ≈ 2e-16: 1 - p rounds to 1.0, whose normal quantile does not exist
    # (it raised, and the detector asking was reported as an internal error)
    a, b = np.arange(20.0) + 100, np.arange(40.0) * 0.5
    z = stats.mann_whitney_strength(a, b)
    assert 7.5 < z < 9 and np.isfinite(z)
    assert stats.mann_whitney_strength(b, a) < -7.5


def _robust_z_point_by_point(y, window, min_history, floor, upward):
    """robust_z as defined, one history at a time (the reference the all-windows path must equal)."""
    z = np.full(y.size, np.nan)
    for i in range(min_history, y.size):
        hist = y[max(0, i - window) : i]
        med = float(np.median(hist))
        tiny = 1e-12 + 1e-6 * abs(med)
        if upward:
            up = hist[hist >= med] - med
            s = stats.MAD_SCALE * float(np.median(up)) if up.size >= 2 else 0.0
            if s <= tiny:
                s = stats.robust_scale(hist, floor=tiny)
            z[i] = (y[i] - med) / max(s, floor)
        else:
            z[i] = abs(y[i] - med) / max(stats.robust_scale(hist, floor=tiny), floor)
    return z


@pytest.mark.parametrize("upward", [False, True])
def test_robust_z_all_windows_at_once_equals_the_point_by_point_definition(upward):
    rng = np.random.default_rng(1)
    curves = {
        "normal": lambda n: rng.normal(size=n),
        "ties and zero spread": lambda n: rng.integers(0, 3, n).astype(float),
        "constant": lambda n: np.full(n, 2.5),
        "log-normal with dips to 0": lambda n: np.exp(3 * rng.normal(size=n)) * (rng.random(n) < 0.7),
        "near the float maximum": lambda n: rng.choice([0.0, 1e-13, 5.0, 1e308, -1e308], n),
    }
    with np.errstate(all="ignore"):
        for name, make in curves.items():
            for _ in range(40):
                y = make(int(rng.integers(0, 90)))
                if y.size and rng.random() < 0.2:
                    y[rng.integers(0, y.size)] = np.nan  # non-finite curves keep the loop
                window, history = int(rng.integers(1, 30)), int(rng.integers(1, 12))
                floor = float(rng.choice([0.0, 1e-9, 0.3, np.nan]))
                want = _robust_z_point_by_point(y, window, history, floor, upward)
                got = stats.robust_z(y, window, min_history=history, floor=floor, upward=upward)
                assert np.array_equal(got, want, equal_nan=True), (name, y, window, history, floor)


def test_centered_rolling_median_equals_the_median_of_each_window():
    rng = np.random.default_rng(2)
    for _ in range(200):
        n, window = int(rng.integers(0, 40)), int(rng.integers(1, 12))
        y = rng.integers(0, 4, n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)
        if n and rng.random() < 0.2:
            y[rng.integers(0, n)] = np.nan
        half = max(1, min(window, n)) // 2 if n else 0
        want = [np.median(y[max(0, i - half) : min(n, i + half + 1)]) for i in range(n)]
        got = stats.rolling_median(y, window, center=True)
        assert np.array_equal(got, np.array(want), equal_nan=True), (y, window)
