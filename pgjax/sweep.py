"""Sweep files (TOML) -> validated groups -> results/<name>/{curves.csv, runs.json}.

    name = "quick"          # results folder name (default: the file's stem)
    seeds = 4               # or an explicit list [0, 1, 2, 3]
    num_evals = 20          # evaluation points per run (plus one right after init)
    eval_episodes = 8
    matmul_precision = "highest"  # float32 matmuls (the default); see pgjax.runner.MATMUL_PRECISIONS

    [[run]]
    agent = "ppo"
    env = "gymnax/Pendulum-v1"
    steps = 1_000_000
    backend = "generalized" # brax only; optional
    config = { lr = 3e-4 }  # fixed overrides
    grid = { lr = [1e-4, 3e-4] }   # cartesian product; float fields share one compiled program

Everything is validated before anything compiles; results are rewritten atomically after each group.
"""
from __future__ import annotations

import datetime as dt
import itertools
import tomllib
from pathlib import Path
from typing import Any

from pgjax import driver
from pgjax.config import ConfigError, to_dict
from pgjax.results import device_info, git_commit, versions, write_results
from pgjax.runner import DEFAULT_MATMUL_PRECISION, Group, GroupResult, make_group, run_group

RUN_KEYS = {"agent", "env", "steps", "backend", "config", "grid", "seeds"}
TOP_KEYS = {"name", "seeds", "num_evals", "eval_episodes", "matmul_precision", "run", "description"}


def seeds_from(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: seeds must be a count or a list of integers")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}: seeds must be >= 1 (got {value})")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return list(value)
    raise ConfigError(f"{where}: seeds must be a count >= 1 or a non-empty list of integers (got {value!r})")


def grid_points(grid: dict, where: str) -> list[dict]:
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{key} must be a non-empty list")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def load_sweep(path: str | Path, matmul_precision: str | None = None) -> tuple[str, list[Group]]:
    """Parse and validate a sweep file; raises ConfigError with a one-line reason. A matmul_precision
    given here overrides the file's."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read sweep file {str(path)!r}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {str(path)!r} is not valid TOML: {e}") from None
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)} (allowed: {sorted(TOP_KEYS)})")
    runs = spec.get("run")
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{path}: needs at least one [[run]] table with agent, env and steps")
    name = str(spec.get("name", path.stem))
    default_seeds = seeds_from(spec.get("seeds", 1), str(path))
    num_evals = spec.get("num_evals", driver.DEFAULT_NUM_EVALS)
    eval_episodes = spec.get("eval_episodes", driver.DEFAULT_EVAL_EPISODES)
    for key, value in (("num_evals", num_evals), ("eval_episodes", eval_episodes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{path}: {key} must be an integer >= 1 (got {value!r})")
    precision = matmul_precision or spec.get("matmul_precision", DEFAULT_MATMUL_PRECISION)  # make_group checks it
    groups: list[Group] = []
    for i, run in enumerate(runs):
        where = f"{path} run #{i + 1}"
        if not isinstance(run, dict):
            raise ConfigError(f"{where}: each [[run]] must be a table")
        unknown = set(run) - RUN_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(RUN_KEYS)})")
        for key in ("agent", "env", "steps"):
            if key not in run:
                raise ConfigError(f"{where}: missing {key!r}")
        steps = run["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"{where}: steps must be a positive integer (got {steps!r})")
        fixed, grid = run.get("config", {}), run.get("grid", {})
        if not isinstance(fixed, dict) or not isinstance(grid, dict):
            raise ConfigError(f"{where}: config and grid must be tables")
        if "total_steps" in fixed or "total_steps" in grid:
            raise ConfigError(f"{where}: set the budget with steps, not total_steps")
        overrides = [{**fixed, **point, "total_steps": steps} for point in grid_points(grid, where)]
        seeds = seeds_from(run["seeds"], where) if "seeds" in run else default_seeds
        try:
            groups += make_group(str(run["agent"]), str(run["env"]), run.get("backend"), seeds, overrides,
                                 num_evals, eval_episodes, str(precision))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return name, groups


def metadata(name: str, results: list[GroupResult], commit: str) -> dict:
    configs = {}
    for r in results:
        for cid, c in zip(r.group.config_ids, r.group.configs):
            configs[cid] = {"agent": r.group.agent, "env": r.group.env, "backend": r.group.backend,
                            "config": to_dict(c)}
    return {
        "sweep": name,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "device": device_info(),
        "git_commit": commit,
        "groups": [r.summary() for r in results],
        "configs": configs,
    }


def run_groups(name: str, groups: list[Group], out: Path, progress: bool = True) -> list[GroupResult]:
    results: list[GroupResult] = []
    rows: list[dict] = []
    metric_rows: list[dict] = []
    commit = git_commit()  # before the sweep writes into a tracked results folder and makes it "dirty"
    for group in groups:
        result = run_group(group, progress)
        results.append(result)
        rows += result.rows
        metric_rows += result.metric_rows
        write_results(out, rows, metadata(name, results, commit), metric_rows)
    return results
