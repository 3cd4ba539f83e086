"""Sweep files (TOML) -> validated groups -> results/<name>/{curves.csv, runs.json}.

    name = "quick"          # results folder name (default: the file's stem)
    seeds = 4               # or an explicit list [0, 1, 2, 3]
    [[run]]
    agent = "ppo"
    env = "gymnax/Pendulum-v1"
    steps = 1_000_000
    grid = { lr = [1e-4, 3e-4] }   # cartesian product; float fields share one compiled program

Everything is validated before anything compiles. Every field, and the checkpoints that let `--resume` continue
a killed sweep exactly: docs/reproducibility.md (its opening and the section "Sweep files").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import shutil
import tomllib
import warnings
from pathlib import Path
from typing import Any

import jax

from pgjax import distributed
from pgjax.checkpoint import GroupCheckpoints, save_policies
from pgjax.config import ConfigError, to_dict
from pgjax.contract import Agent
from pgjax.defaults import DEFAULT_EVAL_EPISODES, DEFAULT_MATMUL_PRECISION, DEFAULT_NUM_EVALS
from pgjax.groups import Group, make_group
from pgjax.layout import runs_mesh
from pgjax.memory import check_group_fits
from pgjax.presets import preset_overrides
from pgjax.results import FolderLock, Interrupted, ResultsFolder, device_info, git_commit, versions
from pgjax.runner import Recorder, run_group
from pgjax.tensorboard import TensorBoardStream

RUN_KEYS = {"agent", "env", "steps", "backend", "config", "grid", "seeds", "preset"}
TOP_KEYS = {"name", "seeds", "num_evals", "eval_episodes", "matmul_precision", "run", "description", "scores"}


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


def read_sweep_file(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read sweep file {str(path)!r}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {str(path)!r} is not valid TOML: {e}") from None


def load_scores(path: str | Path) -> dict[str, dict]:
    """The sweep file's score normalisation, `[scores."env"]` tables of `random` (a uniform random
    policy's return: score 0) and `reference` (a documented return: score 1) with their `source`."""
    scores = read_sweep_file(Path(path)).get("scores", {})
    if not isinstance(scores, dict):
        raise ConfigError(f'{path}: scores must be a table of [scores."env"] tables')
    for env, s in scores.items():
        where = f"{path}: scores.{env!r}"
        if (
            not isinstance(s, dict)
            or set(s) - {"random", "reference", "source"}
            or not {"random", "reference"} <= set(s)
        ):
            raise ConfigError(f"{where} needs random and reference (numbers) and may give a source")
        if not all(isinstance(s[k], (int, float)) and not isinstance(s[k], bool) for k in ("random", "reference")):
            raise ConfigError(f"{where}: random and reference must be numbers")
        if s["random"] == s["reference"]:
            raise ConfigError(f"{where}: reference must differ from random")
        if env.startswith("dmc/"):
            raise ConfigError(
                f"{where}: dmc/ tasks are always normalised on DMC's own scale (0 and 1000); remove this table"
            )
    return scores


def load_sweep(path: str | Path, matmul_precision: str | None = None) -> tuple[str, list[Group]]:
    """Parse and validate a sweep file; raises ConfigError with a one-line reason. A matmul_precision
    given here overrides the file's."""
    path = Path(path)
    spec = read_sweep_file(path)
    load_scores(path)
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)} (allowed: {sorted(TOP_KEYS)})")
    runs = spec.get("run")
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{path}: needs at least one [[run]] table with agent, env and steps")
    name = str(spec.get("name", path.stem))
    default_seeds = seeds_from(spec.get("seeds", 1), str(path))
    num_evals = spec.get("num_evals", DEFAULT_NUM_EVALS)
    eval_episodes = spec.get("eval_episodes", DEFAULT_EVAL_EPISODES)
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
        seeds = seeds_from(run["seeds"], where) if "seeds" in run else default_seeds
        points = grid_points(grid, where)
        try:
            preset = (
                preset_overrides(str(run["preset"]), str(run["agent"]), str(run["env"]), steps)
                if "preset" in run
                else {}
            )
            overrides = [{**preset, **fixed, **point, "total_steps": steps} for point in points]
            groups += make_group(
                str(run["agent"]),
                str(run["env"]),
                run.get("backend"),
                seeds,
                overrides,
                num_evals,
                eval_episodes,
                str(precision),
            )
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    seen: dict = {}
    for i, g in enumerate(groups):
        for cid in g.config_ids:
            for seed in g.seeds:
                if (cid, seed) in seen:
                    raise ConfigError(
                        f"{path}: {g.agent} on {g.env} with config {cid} and seed {seed} is planned twice "
                        f"(groups {seen[(cid, seed)] + 1} and {i + 1}); a run's results would collide"
                    )
                seen[(cid, seed)] = i
    return name, groups


def group_plan(group: Group) -> dict:
    """Everything that decides a group's curves: a resumed sweep must plan exactly the same."""
    return {
        "agent": group.agent,
        "env": group.env,
        "backend": group.backend,
        "seeds": group.seeds,
        "num_evals": group.num_evals,
        "eval_episodes": group.eval_episodes,
        "matmul_precision": group.matmul_precision,
        "configs": [to_dict(c) for c in group.configs],
        "config_ids": group.config_ids,
    }


def group_key(plan: dict) -> str:
    return hashlib.sha1(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:12]


def flat(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}.{key}").items()}
    if isinstance(tree, list) and tree and isinstance(tree[0], dict):
        return {k: v for i, sub in enumerate(tree) for k, v in flat(sub, f"{prefix}[{i}]").items()}
    return {prefix: tree}


def plan_differences(old: list[dict], new: list[dict]) -> list[str]:
    """What differs between two plans, field by field ("run 2.configs[0].lr: 0.0003 -> 0.001")."""
    if len(old) != len(new):
        return [f"number of groups: {len(old)} -> {len(new)}"]
    a = {k: v for i, p in enumerate(old) for k, v in flat(p, f"group {i + 1}").items()}
    b = {k: v for i, p in enumerate(new) for k, v in flat(p, f"group {i + 1}").items()}
    missing = object()
    return [
        f"{k}: {a.get(k, 'absent')} -> {b.get(k, 'absent')}"
        for k in sorted(a.keys() | b.keys(), key=str)
        if a.get(k, missing) != b.get(k, missing)
    ]


class FolderRecorder(Recorder):
    """One group's evaluation points into the results folder, its run state into checkpoints."""

    saves_run_state = True

    def __init__(
        self,
        folder: ResultsFolder,
        group: Group,
        key: str,
        checkpoint_every: int | None,
        resume: bool,
        on_point,
        stream=None,
    ):
        self.folder, self.key, self.resuming, self.on_point, self.stream = folder, key, resume, on_point, stream
        self.owns = run_owner(group)
        self.checkpoints = GroupCheckpoints(folder.checkpoints / key, checkpoint_every)
        self.chunks_done = -1

    def resume(self, run_shape):
        if not self.resuming:
            return None
        restored = self.checkpoints.restore_latest(run_shape)
        last_steps = restored[2]["env_steps"] if restored else -1
        # rows of points reached after the last checkpoint are run again, so they go
        self.folder.keep_rows(lambda row: not self.owns(row) or int(row["env_steps"]) <= last_steps)
        if restored is None:
            return None
        chunks_done, run, meta = restored
        if meta.get("devices") != jax.device_count():
            warnings.warn(
                f"{self.key} was checkpointed with {meta.get('devices')} device(s) and resumes on "
                f"{jax.device_count()}: the curves from here on will not be bit-identical to an "
                "uninterrupted run (the runs are split over the devices differently)",
                stacklevel=2,
            )
        self.chunks_done = chunks_done
        return chunks_done, run, meta["wall_s"]

    def point(self, chunks_done, rows, metric_rows, run, wall_s, last):
        self.folder.append(rows, metric_rows)
        if self.stream:
            self.stream.write(rows, metric_rows)
        self.chunks_done = chunks_done
        self.on_point(self.key, chunks_done)
        # process 0's clock decides for all: orbax's save is collective, and each process's wall time differs
        if chunks_done and not last and distributed.same_as_writer(self.checkpoints.due(chunks_done, wall_s)):
            self.checkpoints.save(
                chunks_done,
                run,
                {"env_steps": int(rows[0]["env_steps"]), "wall_s": wall_s, "devices": jax.device_count()},
            )


def run_owner(group: Group):
    runs = {(group.agent, group.env, group.backend, cid, str(seed)) for cid in group.config_ids for seed in group.seeds}
    return lambda row: (row["agent"], row["env"], row["backend"], row["config_id"], str(row["seed"])) in runs


def check_folder(folder: ResultsFolder, plans: list[dict], mode: str, resume_hint: str) -> dict | None:
    """What a resume continues (None: start afresh); refuses, before anything compiles or is written,
    to overwrite results without --overwrite or to resume results that another plan wrote."""
    if mode == "overwrite" or not folder.holds_results():
        return None
    if mode != "resume":
        raise ConfigError(
            f"{folder.path} already holds results; continue them with --resume "
            f"({resume_hint}) or replace them with --overwrite"
        )
    runs = folder.read_runs()
    if runs is None or "plan" not in runs:
        raise ConfigError(
            f"{folder.path} holds results without a resumable plan (written before resume "
            f"existed or damaged); write elsewhere with --out or replace them with --overwrite"
        )
    # a sweep file that only appends groups (a suite extended by new tasks) continues: its first groups
    # are the ones that wrote these results
    differences = plan_differences(
        runs["plan"], plans[: len(runs["plan"])] if len(plans) > len(runs["plan"]) else plans
    )
    if differences:
        raise ConfigError(
            f"cannot resume {folder.path}: the sweep differs from the one that wrote it: " + "; ".join(differences)
        )
    return runs


def metadata(
    name: str, plans: list[dict], finished: list[dict], commit: str, previous: dict | None, scores: dict
) -> dict:
    configs = {}
    for plan in plans:
        for cid, c in zip(plan["config_ids"], plan["configs"]):
            configs[cid] = {"agent": plan["agent"], "env": plan["env"], "backend": plan["backend"], "config": c}
    started = previous or {}
    return {
        "sweep": name,
        "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "device": device_info(),
        "git_commit": started.get("git_commit", commit),
        "resumed_at_commits": started.get("resumed_at_commits", []) + ([commit] if previous else []),
        "groups": finished,
        "in_progress": None,
        "plan": plans,
        "configs": configs,
        "scores": scores,
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """How a command writes its results folder: built once, by the CLI from its flags or by the API."""

    mode: str = "new"  # new, resume or overwrite
    progress: bool = True
    checkpoint_every: int | None = None  # evaluation points between checkpoints; None: about once a minute
    resume_hint: str = ""  # the command that resumes this one, for the messages that say how
    tensorboard: Path | None = None  # also stream every point to TensorBoard event files there
    scores: dict = dataclasses.field(default_factory=dict)  # the sweep file's score normalisation
    device_memory: int | None = None  # bytes a device may hold, where JAX cannot say (None: as JAX reports)


def run_groups(
    name: str,
    groups: list[Group],
    out: Path,
    options: WriteOptions = WriteOptions(),
    *,
    on_finish=None,
    then=None,
) -> list[dict]:
    """Run the groups into `out` as `options` say, writing every evaluation point as it comes and each
    finished group's policies; returns the summaries of all groups, those finished earlier included.
    `on_finish(GroupResult)` sees each group run by this call, final states included. A group whose runs
    need more memory than a device has (as the accelerator reports it, or `options.device_memory` bytes) is
    refused before anything is written (its run states) or before it runs (with its compiled programs'
    scratch space). One command writes a folder at a time: another one's folder is refused; `then(summaries)` runs
    while the folder is still held (the CLI's report)."""
    if options.checkpoint_every is not None and options.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1 (got {options.checkpoint_every})")
    lock = FolderLock(out)
    distributed.barrier("results folder lock")  # every process is there for process 0's answer
    try:
        # process 0 alone takes the folder (it alone writes rows); the others stop with its refusal
        refusal = distributed.writer_message(lock.take() if distributed.is_writer() else None)
        if refusal:
            raise ConfigError(refusal)
        summaries = run_groups_holding_folder(name, groups, out, options, on_finish)
        if then:
            then(summaries)
        return summaries
    finally:
        lock.release()


def run_groups_holding_folder(
    name: str, groups: list[Group], out: Path, options: WriteOptions, on_finish
) -> list[dict]:
    folder = ResultsFolder(out, writes=distributed.is_writer())
    plans = [group_plan(g) for g in groups]
    keys = [group_key(p) for p in plans]
    previous = check_folder(folder, plans, options.mode, options.resume_hint)
    for g in groups:  # every group's split over the devices is possible, before anything is written
        runs_mesh(len(g.configs), len(g.seeds))
    done = {g["id"]: g for g in (previous or {}).get("groups", [])}
    for g, key in zip(groups, keys):  # and its run states fit on a device
        if key not in done:
            check_group_fits(g, options.device_memory, checkpoints=True)
    distributed.barrier("results folder checked")  # every process sees the folder before process 0 changes it
    stream = TensorBoardStream(options.tensorboard) if options.tensorboard and folder.writes else None
    if previous is None:
        folder.clear()
    folder.start()
    distributed.barrier("results folder ready")  # no process creates checkpoints before it is cleared
    commit = git_commit()  # before the sweep writes into a tracked results folder and makes it "dirty"
    runs = metadata(name, plans, [done[k] for k in keys if k in done], commit, previous, options.scores)
    folder.write_runs(runs)

    def on_point(key, chunks_done):
        runs["in_progress"] = {"group": key, "evaluation_points": chunks_done + 1}
        folder.write_runs(runs)

    for group, key in zip(groups, keys):
        if key in done:
            continue
        recorder = FolderRecorder(folder, group, key, options.checkpoint_every, previous is not None, on_point, stream)
        failed = True
        try:
            result = run_group(group, options.progress, recorder, device_memory_given=options.device_memory)
            policies = distributed.to_host((Agent.policy_state(result.run.agent_state), result.run.best_policy))
            if folder.writes:
                save_policies(folder.policies / key, *policies)
            runs["groups"].append({"id": key, **result.summary()})
            runs["in_progress"] = None
            folder.write_runs(runs)
            failed = False
        except KeyboardInterrupt:
            raise Interrupted(interrupted_message(folder, runs, group, recorder, options.resume_hint)) from None
        finally:
            recorder.checkpoints.close(quiet=failed)  # a failed save is not reported over the first error
        if folder.writes:
            recorder.checkpoints.remove()
        if on_finish:
            on_finish(result)
        del result  # the final run states: not held on the device while the next group runs
    if folder.writes:
        shutil.rmtree(folder.checkpoints, ignore_errors=True)  # every group finished: nothing left to resume
    if stream:
        stream.close()
    return runs["groups"]


def interrupted_message(folder: ResultsFolder, runs: dict, group: Group, recorder: FolderRecorder, hint: str) -> str:
    finished = len(runs["groups"])
    at = (
        f"{group.agent} on {group.env} stopped after evaluation point {recorder.chunks_done}"
        if recorder.chunks_done >= 0
        else f"{group.agent} on {group.env} had not reached its first evaluation point"
    )
    return (
        f"interrupted: {folder.curves} and {folder.metrics} hold every evaluation point reached "
        f"({finished} group(s) finished; {at}); a resume continues each group from its last checkpoint: {hint}"
    )
