"""Statistics across tasks with rliable (Agarwal et al., "Deep RL at the edge of the statistical
precipice", 2021): scores normalised per task (a random policy = 0, a documented reference return = 1),
IQM and optimality gap with stratified-bootstrap 95 % confidence intervals, performance profiles,
the probability of improvement of every pair of agents, and per-task IQMs with bootstrap intervals.
The statistics are rliable's own functions; this module only arranges the score matrices."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping

import numpy as np

CONFIDENCE = 0.95
REPS = 2000
SEED = 0
FEW_SEEDS = 5  # the report says so when an interval rests on fewer runs per task than this


@contextlib.contextmanager
def _pandas_3_compatible_arch():
    """rliable 1.2 allows arch < 8, and arch 7.2 (the newest of those) decorates a method at import time
    with pandas' private `deprecate_kwarg(old, new)`, which pandas 3 changed to `deprecate_kwarg(klass,
    old, new)`: importing rliable fails with "missing 1 required positional argument". While rliable is
    imported, the old call form is accepted and given pandas' FutureWarning."""
    try:
        import pandas.util._decorators as decorators
    except ImportError:
        yield
        return
    original = decorators.deprecate_kwarg

    def either_form(first, *args, **kwargs):
        if isinstance(first, type) and issubclass(first, Warning):
            return original(first, *args, **kwargs)
        return original(FutureWarning, first, *args, **kwargs)

    decorators.deprecate_kwarg = either_form
    try:
        yield
    finally:
        decorators.deprecate_kwarg = original


def rliable():
    """(rliable.library, rliable.metrics)."""
    with _pandas_3_compatible_arch():
        from rliable import library, metrics
    return library, metrics


# The DeepMind Control Suite's own scale (per-step rewards in [0, 1] over 1000-step episodes): every dmc/
# task is normalised on it, whatever a sweep file says, so DMC scores read as the field reads them.
DMC_SCALE = {
    "random": 0.0,
    "reference": 1000.0,
    "source": "DMC's own scale: returns lie in [0, 1000] (0 = no reward, 1000 = perfect)",
}


def with_dmc_scale(scores: Mapping[str, Mapping], envs) -> dict:
    """`scores` with DMC's scale for every dmc/ task among `envs`."""
    return {**scores, **{e: DMC_SCALE for e in envs if e.startswith("dmc/")}}


def normalize(returns, random: float, reference: float) -> np.ndarray:
    """(return − random) / (reference − random): the random policy scores 0, the reference 1."""
    if reference == random:
        raise ValueError(f"the reference return must differ from the random policy's (both {random})")
    return (np.asarray(returns, float) - random) / (reference - random)


def score_matrices(
    finals: Mapping[str, Mapping[str, np.ndarray]], scores: Mapping[str, Mapping[str, float]], tasks: list[str]
) -> dict[str, np.ndarray]:
    """{agent: normalised final returns [runs, tasks]} from {agent: {task: per-seed returns}}; rliable's
    stratified bootstrap needs as many runs on every task, so each agent keeps its first n seeds on
    every task, n the fewest it has."""
    out = {}
    for agent, per_task in finals.items():
        n = min(len(per_task[t]) for t in tasks)
        out[agent] = np.stack(
            [normalize(np.asarray(per_task[t])[:n], scores[t]["random"], scores[t]["reference"]) for t in tasks], axis=1
        )
    return out


@contextlib.contextmanager
def _seeded():
    """rliable's stratified bootstrap draws its resamples from numpy's global generator (whatever
    random_state says), so a report is reproducible only with that generator seeded; the caller's
    state is put back afterwards."""
    state = np.random.get_state()
    np.random.seed(SEED)
    try:
        yield
    finally:
        np.random.set_state(state)


def _estimates(library, score_dict, func, reps):
    with _seeded():
        return library.get_interval_estimates(score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE)


def iqm_and_optimality_gap(matrices: Mapping[str, np.ndarray], reps: int = REPS) -> dict[str, dict]:
    """{agent: {"IQM": (point, low, high), "optimality gap": (point, low, high)}} across tasks."""
    library, metrics = rliable()

    def both(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_optimality_gap(x)])

    points, intervals = _estimates(library, dict(matrices), both, reps)
    return {
        a: {
            name: (float(points[a][i]), float(intervals[a][0, i]), float(intervals[a][1, i]))
            for i, name in enumerate(("IQM", "optimality gap"))
        }
        for a in matrices
    }


def performance_profiles(matrices: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = REPS):
    """({agent: fraction of runs scoring above each τ}, {agent: [2, len(taus)] interval})."""
    library, _ = rliable()
    with _seeded():
        return library.create_performance_profile(dict(matrices), taus, reps=reps, confidence_interval_size=CONFIDENCE)


def probability_of_improvement(matrices: Mapping[str, np.ndarray], reps: int = REPS) -> dict[tuple, tuple]:
    """{(x, y): (P(X > Y), low, high)} for every ordered pair of agents."""
    library, metrics = rliable()
    ordered = list(itertools.permutations(matrices, 2))  # method names may hold any character: index them
    pairs = {str(i): (matrices[x], matrices[y]) for i, (x, y) in enumerate(ordered)}
    if not pairs:
        return {}
    points, intervals = _estimates(
        library, pairs, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps
    )
    return {
        pair: (float(points[str(i)][0]), float(intervals[str(i)][0, 0]), float(intervals[str(i)][1, 0]))
        for i, pair in enumerate(ordered)
    }


def task_iqm(returns: np.ndarray, reps: int = REPS) -> tuple[float, float, float]:
    """IQM over one task's seeds with its bootstrap 95 % interval (rliable on a one-task matrix)."""
    library, metrics = rliable()
    x = np.asarray(returns, float).reshape(-1, 1)
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    points, intervals = _estimates(library, {"run": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps)
    return float(points["run"][0]), float(intervals["run"][0, 0]), float(intervals["run"][1, 0])


def mean_difference(a, b, reps: int = REPS) -> tuple[float, float, float]:
    """mean(a) − mean(b) for two equally many independent runs (two trainers on one task) with its
    bootstrap 95 % interval: rliable's stratified bootstrap with the two sides as two strata, so each
    side's runs are resampled apart."""
    library, _ = rliable()
    x = np.stack([np.asarray(a, float), np.asarray(b, float)], axis=1)
    points, intervals = _estimates(library, {"d": x}, lambda s: np.array([s[:, 0].mean() - s[:, 1].mean()]), reps)
    return float(points["d"][0]), float(intervals["d"][0, 0]), float(intervals["d"][1, 0])


def iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """rliable's aggregate_iqm (the 25 % trimmed mean of all runs x tasks) of every evaluation point of
    scores [runs, tasks, points] at once: one statistic call per bootstrap resample, not one per point."""
    from scipy import stats

    return stats.trim_mean(scores.reshape(-1, scores.shape[-1]), 0.25, axis=0)


def iqm_curve(returns: np.ndarray, reps: int = REPS // 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over seeds at every evaluation point with its stratified-bootstrap 95 % band: returns
    [seeds, points]; seeds with any NaN (diverged) are left out."""
    library, _ = rliable()
    x = np.asarray(returns, float)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) == 0:
        nan = np.full(returns.shape[1], np.nan)
        return nan, nan, nan
    if len(x) < 2:
        return x[0], x[0], x[0]
    points, intervals = _estimates(library, {"run": x[:, None, :]}, iqm_per_point, reps)
    return points["run"], intervals["run"][0], intervals["run"][1]
