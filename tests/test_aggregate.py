"""The aggregate statistics are rliable's, unchanged by the wrapper, on a small synthetic score matrix."""

import numpy as np
import pytest
from scipy import stats

from pgjax import aggregate

RNG = np.random.default_rng(7)
MATRICES = {
    "ppo": RNG.normal(0.6, 0.3, (6, 3)),
    "sac": RNG.normal(0.8, 0.2, (6, 3)),
    "nharpg": RNG.normal(0.2, 0.3, (6, 3)),
}


def test_normalisation_maps_the_random_policy_to_0_and_the_reference_to_1():
    assert aggregate.normalize([-1200.0, -150.0, -675.0], random=-1200.0, reference=-150.0).tolist() == [0.0, 1.0, 0.5]
    with pytest.raises(ValueError):
        aggregate.normalize([1.0], random=3.0, reference=3.0)
    finals = {"ppo": {"a": np.array([10.0, 20.0, 30.0]), "b": np.array([0.0, 1.0])}}
    m = aggregate.score_matrices(
        finals, {"a": {"random": 10.0, "reference": 30.0}, "b": {"random": 0.0, "reference": 2.0}}, ["a", "b"]
    )
    np.testing.assert_allclose(m["ppo"], [[0.0, 0.0], [0.5, 0.5]])  # two runs on every task


def test_iqm_and_optimality_gap_equal_rliables_own_calls():
    library, metrics = aggregate.rliable()
    ours = aggregate.iqm_and_optimality_gap(MATRICES, reps=100)
    func = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_optimality_gap(x)])
    np.random.seed(aggregate.SEED)  # rliable resamples with numpy's global generator
    points, intervals = library.get_interval_estimates(MATRICES, func, reps=100)
    for agent in MATRICES:
        assert ours[agent]["IQM"] == (points[agent][0], intervals[agent][0, 0], intervals[agent][1, 0])
        assert ours[agent]["optimality gap"] == (points[agent][1], intervals[agent][0, 1], intervals[agent][1, 1])
        # and the IQM is the 25 % trimmed mean of all runs x tasks
        assert ours[agent]["IQM"][0] == pytest.approx(stats.trim_mean(MATRICES[agent].ravel(), 0.25))
        assert ours[agent]["IQM"][1] <= ours[agent]["IQM"][0] <= ours[agent]["IQM"][2]


def test_probability_of_improvement_and_profiles_equal_rliables_own_calls():
    library, metrics = aggregate.rliable()
    ours = aggregate.probability_of_improvement(MATRICES, reps=100)
    assert len(ours) == 6  # every ordered pair
    pairs = {f"{x},{y}": (MATRICES[x], MATRICES[y]) for x, y in ours}
    np.random.seed(aggregate.SEED)
    points, intervals = library.get_interval_estimates(
        pairs, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=100
    )
    for (x, y), (p, lo, hi) in ours.items():
        assert (p, lo, hi) == (points[f"{x},{y}"][0], intervals[f"{x},{y}"][0, 0], intervals[f"{x},{y}"][1, 0])
        assert p == pytest.approx(1 - ours[(y, x)][0])
    taus = np.linspace(0, 1.5, 7)
    profile, _ = aggregate.performance_profiles(MATRICES, taus, reps=50)
    np.random.seed(aggregate.SEED)
    direct, _ = library.create_performance_profile(MATRICES, taus, reps=50)
    for agent in MATRICES:
        np.testing.assert_array_equal(profile[agent], direct[agent])
        np.testing.assert_allclose(profile[agent], [(MATRICES[agent] > t).mean() for t in taus])


def test_task_iqm_is_rliables_on_one_task():
    library, metrics = aggregate.rliable()
    returns = RNG.normal(-200, 50, 8)
    point, lo, hi = aggregate.task_iqm(returns, reps=100)
    np.random.seed(aggregate.SEED)
    p, ci = library.get_interval_estimates(
        {"r": returns[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=100
    )
    assert (point, lo, hi) == (p["r"][0], ci["r"][0, 0], ci["r"][1, 0])


def test_the_curves_iqm_per_point_is_rliables_iqm_at_each_point():
    _, metrics = aggregate.rliable()
    scores = RNG.normal(size=(8, 2, 5))
    np.testing.assert_allclose(
        aggregate.iqm_per_point(scores), [metrics.aggregate_iqm(scores[..., p]) for p in range(5)]
    )
    returns = RNG.normal(size=(6, 4))
    returns[2, 3] = np.nan  # a diverged seed is left out
    mid, lo, hi = aggregate.iqm_curve(returns, reps=100)
    np.testing.assert_allclose(mid, [metrics.aggregate_iqm(np.delete(returns, 2, 0)[:, p]) for p in range(4)])
    assert np.all(lo <= mid) and np.all(mid <= hi)
