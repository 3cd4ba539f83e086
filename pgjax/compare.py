"""`pgjax compare A B`: two results folders of the same sweep, group by group (same agent, env, backend
and config), for returns that change silently across versions, machines or commits. Per group: whether
every seed's curve is identical as stored, from which evaluation point the curves part, and the
difference of final returns (B minus A) with a stratified-bootstrap 95 % interval over seeds; a group
differs when that interval excludes zero, and the command fails when a group differs by more than the
tolerance the user sets. A group of one seed has no interval: there the tolerance alone decides."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from pgjax import aggregate
from pgjax.config import ConfigError
from pgjax.report import load_runs, run_curves

IDENTICAL, SAME, DIFFERS, NO_INTERVAL = "identical", "same within the interval", "differs", "parted, no interval"


@dataclasses.dataclass(frozen=True)
class GroupComparison:
    """One group of runs in both folders; `difference` is B's mean final return minus A's."""

    agent: str
    env: str
    backend: str
    config_id: str
    seeds: int
    first_mean: float
    second_mean: float
    difference: float
    low: float
    high: float
    parts_at: int | None  # the first env_steps at which some seed's stored return differs; None: identical
    diverged: tuple[tuple[int, ...], tuple[int, ...]]  # the seeds that diverged in A and in B

    @property
    def verdict(self) -> str:
        if self.parts_at is None:
            return IDENTICAL
        if self.diverged[0] != self.diverged[1]:
            return DIFFERS
        if not np.isfinite(self.low):
            return NO_INTERVAL
        return SAME if self.low <= 0.0 <= self.high else DIFFERS

    def beyond(self, tolerance: float) -> bool:
        """Differs (or parted with no interval) by more than `tolerance` in return units; seeds that diverged
        on one side only always count."""
        if self.verdict not in (DIFFERS, NO_INTERVAL):
            return False
        return self.diverged[0] != self.diverged[1] or not abs(self.difference) <= tolerance


def first_parting(first: dict, second: dict) -> int | None:
    """The smallest env_steps at which any seed's (return, status) differs between two {seed: [(steps,
    return, status)]} of one group; None when every curve is identical."""
    parted = [
        steps
        for seed in first
        for (steps, *a), (_, *b) in zip(sorted(first[seed]), sorted(second[seed]))
        if a != b and not (np.isnan(a[0]) and np.isnan(b[0]) and a[1] == b[1])
    ]
    return min(parted) if parted else None


def diverged_seeds(per_seed: dict) -> tuple[int, ...]:
    return tuple(s for s in sorted(per_seed) if any(st != "ok" for *_, st in per_seed[s]))


def compare_group(key: tuple, first: dict, second: dict) -> GroupComparison:
    diverged = (diverged_seeds(first), diverged_seeds(second))
    a, b = (run_curves(per_seed)[1][:, -1] for per_seed in (first, second))  # a diverged run's final is NaN
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == len(b) >= 2:
        difference, low, high = aggregate.mean_difference(b, a)
    else:  # other diverged seeds (the verdict says so) or a single seed: no interval
        difference, low, high = (float(b.mean() - a.mean()) if len(a) and len(b) else np.nan), np.nan, np.nan
    return GroupComparison(
        *key,
        seeds=len(first),
        first_mean=float(a.mean()) if len(a) else np.nan,
        second_mean=float(b.mean()) if len(b) else np.nan,
        difference=difference,
        low=low,
        high=high,
        parts_at=first_parting(first, second),
        diverged=diverged,
    )


def read_folder(folder: Path) -> tuple[dict, dict]:
    """runs.json and {(agent, env, backend, config_id): {seed: [(steps, return, status)]}} of one results
    folder; a missing folder or one without results is refused."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist")
    for name in ("runs.json", "curves.csv"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder} has no {name}: not a results folder of `pgjax sweep` or `pgjax run`")
    meta = json.loads((folder / "runs.json").read_text())
    if meta.get("in_progress"):
        raise ConfigError(f"{folder} holds a sweep still in progress: finish it with `pgjax sweep FILE --resume`")
    return meta, {key[1:]: per_seed for key, per_seed in load_runs([folder]).items()}


def group_name(key: tuple) -> str:
    agent, env, backend, cid = key
    return f"{agent} on {env} ({backend}, {cid})"


def group_shape(per_seed: dict) -> tuple[list[int], dict[int, list[int]]]:
    """A group's seeds and each seed's evaluation points."""
    return sorted(per_seed), {seed: [steps for steps, *_ in sorted(points)] for seed, points in per_seed.items()}


def check_same_sweep(first: Path, second: Path, meta: tuple[dict, dict], runs: tuple[dict, dict]) -> None:
    """Refuse, in one line naming what differs, two folders that are not runs of one sweep."""
    names = [m.get("sweep") for m in meta]
    if names[0] != names[1]:
        raise ConfigError(
            f"{first} is sweep {names[0]!r} and {second} is sweep {names[1]!r}: compare two runs of one sweep"
        )
    only = [sorted(set(runs[i]) - set(runs[1 - i])) for i in (0, 1)]
    if only[0] or only[1]:
        parts = [f"only in {f}: {', '.join(map(group_name, keys))}" for f, keys in zip((first, second), only) if keys]
        raise ConfigError("the folders' groups do not match: " + "; ".join(parts))
    for key in sorted(runs[0]):
        (seeds_a, steps_a), (seeds_b, steps_b) = group_shape(runs[0][key]), group_shape(runs[1][key])
        if seeds_a != seeds_b:
            raise ConfigError(f"{group_name(key)} ran seeds {seeds_a} in {first} and {seeds_b} in {second}")
        for seed in seeds_a:
            if steps_a[seed] != steps_b[seed]:
                raise ConfigError(
                    f"{group_name(key)} seed {seed} was evaluated at other env steps in {second} than in {first} "
                    f"({len(steps_b[seed])} points to {steps_b[seed][-1]:,} against {len(steps_a[seed])} to "
                    f"{steps_a[seed][-1]:,})"
                )


def compare_folders(first: Path, second: Path) -> tuple[tuple[dict, dict], list[GroupComparison]]:
    meta_a, runs_a = read_folder(first)
    meta_b, runs_b = read_folder(second)
    check_same_sweep(first, second, (meta_a, meta_b), (runs_a, runs_b))
    return (meta_a, meta_b), [compare_group(key, runs_a[key], runs_b[key]) for key in sorted(runs_a)]


def parse_tolerance(text: str) -> tuple[float, bool]:
    """'10' (return units) or '5%' (of the magnitude of the first folder's mean final return, per group: near
    a mean of zero that is near zero too)."""
    relative = text.strip().endswith("%")
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise ConfigError(
            f"--tolerance takes a number of return units or a percentage, like 10 or 5%, not {text!r}"
        ) from None
    if not value >= 0:
        raise ConfigError(f"--tolerance must be at least 0, not {text!r}")
    return (value / 100 if relative else value), relative


def group_tolerance(group: GroupComparison, tolerance: float, relative: bool) -> float:
    return tolerance * abs(group.first_mean) if relative else tolerance


def _num(x: float, fmt: str = ".1f") -> str:
    return f"{x:{fmt}}" if np.isfinite(x) else "n/a"


def stack_line(folder: Path, meta: dict) -> str:
    v, d = meta.get("versions", {}), meta.get("device", {})
    return (
        f"{folder}: Python {v.get('python', '?')}, jax {v.get('jax', '?')}, jaxlib {v.get('jaxlib', '?')}, "
        f"flax {v.get('flax', '?')}, brax {v.get('brax', '?')}, mujoco {v.get('mujoco', '?')}, "
        f"{d.get('kind', '?')} x{d.get('count', '?')} ({d.get('cpu', 'CPU model not recorded')}), commit {meta.get('git_commit', '?')[:12]}"
    )


def comparison_table(groups: list[GroupComparison], beyond: list[GroupComparison]) -> list[str]:
    lines = [
        "| agent | env | backend | config_id | seeds | A final | B final | B - A | 95% CI | curves part at | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        verdict = g.verdict
        if g.diverged[0] or g.diverged[1]:
            verdict += f" (diverged seeds: {list(g.diverged[0])} in A, {list(g.diverged[1])} in B)"
        if g in beyond:
            verdict += ", beyond the tolerance"
        parts = "never" if g.parts_at is None else f"{g.parts_at:,} steps"
        ci = f"[{_num(g.low, '+.1f')}, {_num(g.high, '+.1f')}]"
        lines.append(
            f"| {g.agent} | {g.env} | {g.backend} | {g.config_id} | {g.seeds} | {_num(g.first_mean)} | "
            f"{_num(g.second_mean)} | {_num(g.difference, '+.1f')} | {ci} | {parts} | {verdict} |"
        )
    return lines


def main(args) -> int:
    """Prints the stacks, the table and one summary line; 1 when a group differs beyond the tolerance."""
    tolerance, relative = parse_tolerance(args.tolerance)
    first, second = Path(args.first), Path(args.second)
    (meta_a, meta_b), groups = compare_folders(first, second)
    beyond = [g for g in groups if g.beyond(group_tolerance(g, tolerance, relative))]
    counts = {v: sum(g.verdict == v for g in groups) for v in (IDENTICAL, SAME, DIFFERS, NO_INTERVAL)}
    lines = [f"A = {stack_line(first, meta_a)}", f"B = {stack_line(second, meta_b)}", ""]
    lines += comparison_table(groups, beyond)
    lines += [
        "",
        f"{len(groups)} groups: {counts[IDENTICAL]} identical, {counts[SAME]} the same within the 95% interval, "
        f"{counts[DIFFERS]} differ, {counts[NO_INTERVAL]} parted with one seed and no interval ({len(beyond)} "
        f"beyond the tolerance of {args.tolerance})",
    ]
    print("\n".join(lines))
    return 1 if beyond else 0
