"""Running groups of training runs: jit once, vmap over seeds × float hyperparameters, advance in
chunks (one per evaluation point) with a progress bar, and collect tidy curve rows."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pgjax import distributed, driver
from pgjax.config import ConfigError, build, is_static, to_dict
from pgjax.contract import Agent
from pgjax.defaults import DEFAULT_EVAL_EPISODES, DEFAULT_MATMUL_PRECISION, DEFAULT_NUM_EVALS
from pgjax.envs import make as make_env
from pgjax.names import check_agent, check_env
from pgjax.registry import get_agent
from pgjax.results import human_bytes

# float32 matmuls everywhere: JAX's "default" on recent NVIDIA GPUs runs float32 matmuls as TF32 or
# bf16 passes, so GPU curves would differ from CPU ones for a reason nobody chose.
MATMUL_PRECISIONS = ("highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default", "bfloat16")


@dataclasses.dataclass
class Group:
    """Runs that share everything static (one compiled program): seeds × float-hparam configs."""

    agent: str
    env: str
    backend: str
    seeds: list[int]
    configs: list[Any]
    num_evals: int = DEFAULT_NUM_EVALS
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    matmul_precision: str = DEFAULT_MATMUL_PRECISION

    @property
    def config_ids(self) -> list[str]:
        return [config_id(self.agent, self.env, self.backend, c) for c in self.configs]


def config_id(agent: str, env: str, backend: str, config) -> str:
    blob = json.dumps([agent, env, backend, to_dict(config)], sort_keys=True)
    return f"{agent}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def static_key(config) -> tuple:
    return tuple((f.name, getattr(config, f.name)) for f in dataclasses.fields(config) if is_static(f))


def check_matmul_precision(precision: str) -> str:
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"unknown matmul precision {precision!r}; choose one of {', '.join(MATMUL_PRECISIONS)}")
    return precision


def make_group(
    agent: str,
    env: str,
    backend: str | None,
    seeds: list[int],
    overrides: list[dict],
    num_evals: int = DEFAULT_NUM_EVALS,
    eval_episodes: int = DEFAULT_EVAL_EPISODES,
    matmul_precision: str = DEFAULT_MATMUL_PRECISION,
) -> list[Group]:
    """Validate names, configs and budgets (nothing is compiled) and split them into groups by static
    fields."""
    check_agent(agent)
    env, backend = check_env(env, backend)
    if not seeds:
        raise ConfigError("at least one seed is needed (--seeds must be >= 1)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct (got {seeds})")
    if num_evals < 1 or eval_episodes < 1:
        raise ConfigError("num_evals and eval_episodes must be >= 1")
    check_matmul_precision(matmul_precision)
    module = get_agent(agent)
    configs = [build(module.Config, o, agent) for o in overrides]
    groups: dict[tuple, Group] = {}
    for c in configs:
        driver.make_schedule(module, c, num_evals)  # refuses a budget that holds no iteration
        groups.setdefault(
            static_key(c),
            Group(
                agent=agent,
                env=env,
                backend=backend,
                seeds=list(seeds),
                configs=[],
                num_evals=num_evals,
                eval_episodes=eval_episodes,
                matmul_precision=matmul_precision,
            ),
        )
        groups[static_key(c)].configs.append(c)
    return list(groups.values())


@dataclasses.dataclass
class GroupResult:
    group: Group
    rows: list[dict]
    compile_s: float
    run_s: float
    env_steps: int  # per run
    final_returns: np.ndarray  # [configs, seeds]
    diverged: np.ndarray  # [configs, seeds]
    devices: int = 1  # how many devices the runs were split over
    metric_rows: list[dict] = dataclasses.field(default_factory=list)
    run: Any = None  # the final run states (driver.RunState with leading [configs, seeds] axes)
    env_details: dict = dataclasses.field(default_factory=dict)  # episode length, action repeat, ...
    memory: MemoryEstimate | None = None  # per device

    @property
    def steps_per_s(self) -> float:
        runs = len(self.group.configs) * len(self.group.seeds)
        return runs * self.env_steps / max(self.run_s, 1e-9)

    def summary(self) -> dict:
        g = self.group
        return {
            "agent": g.agent,
            "env": g.env,
            "backend": g.backend,
            "seeds": g.seeds,
            "config_ids": g.config_ids,
            "env_details": self.env_details,
            "env_steps_per_run": self.env_steps,
            "compile_s": round(self.compile_s, 3),
            "run_s": round(self.run_s, 3),
            "steps_per_s": round(self.steps_per_s, 1),
            "devices": self.devices,
            "matmul_precision": g.matmul_precision,
            "final_return_mean": round(float(np.nanmean(self.final_returns)), 3),
            "diverged_runs": int(self.diverged.sum()),
            **({"memory_per_device": self.memory.summary()} if self.memory else {}),
        }


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """What one device holds for a group: its share of the run states (every agent state, replay buffers
    included: sharded evenly over the group's devices) and, once compiled, the largest scratch space
    (XLA's temporaries) of the group's programs. The run state is donated from chunk to chunk, so the
    sum is the group's peak."""

    run_state: int
    replay: int  # of run_state
    temporaries: int | None = None  # None: not compiled yet
    checkpoint_copy: int = 0  # a checkpoint copies the run state on the device while orbax writes it out

    @property
    def total(self) -> int:
        return self.run_state + self.checkpoint_copy + (self.temporaries or 0)

    def summary(self) -> dict:
        return {
            "total_bytes": self.total,
            "run_state_bytes": self.run_state,
            "replay_bytes": self.replay,
            "checkpoint_copy_bytes": self.checkpoint_copy,
            "temporaries_bytes": self.temporaries,
        }

    def describe(self) -> str:
        parts = [
            f"run state {human_bytes(self.run_state)}"
            + (f", {human_bytes(self.replay)} of it replay buffers" if self.replay else "")
        ]
        if self.checkpoint_copy:
            parts.append(f"a checkpoint's copy of it {human_bytes(self.checkpoint_copy)}")
        parts.append(
            f"compiled programs' scratch space {human_bytes(self.temporaries)}"
            if self.temporaries is not None
            else "the compiled programs' scratch space not counted yet"
        )
        return f"about {human_bytes(self.total)} per device ({'; '.join(parts)})"


def run_state_memory(
    run_shape, devices: int, temporaries: int | None = None, checkpoints: bool = False
) -> MemoryEstimate:
    """The per-device share of a group's run states of shape `run_shape` split over `devices` (and of the
    copy a checkpoint takes, with `checkpoints`)."""

    def size(x) -> int:
        return math.prod(x.shape) * np.dtype(x.dtype).itemsize

    total = sum(size(x) for x in jax.tree.leaves(run_shape))
    replay = sum(size(x) for x in Agent.replay_leaves(run_shape))
    share = -(-total // devices)
    return MemoryEstimate(share, -(-replay // devices), temporaries, share if checkpoints else 0)


def compiled_temporaries(programs) -> int | None:
    """The largest temporary allocation of the compiled programs, per device (None where XLA says nothing)."""
    sizes = []
    for program in programs:
        analysis = program.memory_analysis()
        if analysis is not None:
            sizes.append(int(analysis.temp_size_in_bytes))
    return max(sizes) if sizes else None


def parse_bytes(text: str) -> int:
    """A size such as 16G, 512M, 1.5GB, 300MB or 4096 (bytes; k, M, G, T are powers of 1000)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if not m:
        raise ConfigError(f"--device-memory must be a size such as 16G, 512M or 300MB (got {text!r})")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2).lower()]
    if value < 1:
        raise ConfigError(f"--device-memory must be positive (got {text!r})")
    return int(value)


def device_memory(devices, given: int | None = None) -> tuple[int, str] | None:
    """(bytes, where that figure comes from) a device may hold for a group: the limit the user gave, else
    the smallest that JAX's allocator reports for `devices`; None where neither is known (a CPU device,
    whose memory is the host's)."""
    if given is not None:
        return given, "--device-memory"
    limits = []
    for d in (d for d in devices if d.process_index == jax.process_index()):  # others' are not ours to ask
        try:
            stats = d.memory_stats()
        except Exception:  # backends without memory statistics
            stats = None
        if stats and stats.get("bytes_limit"):
            limits.append(int(stats["bytes_limit"]))
    return (min(limits), f"{devices[0].device_kind}'s memory for JAX") if limits else None


def check_fits(group: Group, estimate: MemoryEstimate, limit: tuple[int, str] | None, devices: int) -> None:
    """Refuse a group whose runs need more memory than a device has, saying what to change."""
    if limit is None or estimate.total <= limit[0]:
        return
    runs = len(group.configs) * len(group.seeds)
    changes = [f"fewer seeds per device (now {runs // devices} run(s) on each of {devices} device(s))", "more devices"]
    if estimate.replay:
        changes.append(
            f"smaller replay buffers ({human_bytes(estimate.replay)} per device now; `pgjax config {group.agent}` "
            "lists the fields that size them)"
        )
    raise ConfigError(
        f"{group.agent} on {group.env} needs {estimate.describe()}, more than a device's "
        f"{human_bytes(limit[0])} ({limit[1]}); use {', '.join(changes[:-1])} or {changes[-1]}"
    )


def check_group_fits(group: Group, given: int | None = None, checkpoints: bool = False, devices=None) -> None:
    """Before anything compiles: refuse a group whose run states (and a checkpoint's copy of them) exceed
    a device's memory (known for accelerators, or given). Builds and traces the group's initialisation
    only when there is a limit."""
    mesh = runs_mesh(len(group.configs), len(group.seeds), devices)
    limit = device_memory(list(mesh.devices.flat), given)
    if limit is None:
        return
    trainer, keys, configs, mesh = prepare(group, devices)
    check_fits(
        group,
        run_state_memory(run_shape_of(trainer, keys, configs), mesh.size, checkpoints=checkpoints),
        limit,
        mesh.size,
    )


class Progress:
    """A tqdm bar over env steps (all runs of a group together) with steps/s and the latest return."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=label, unit="step", unit_scale=True, file=sys.stderr, dynamic_ncols=True, leave=True
            )

    def update(self, steps: int, latest_return: float, steps_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(f"return {latest_return:.1f}, {steps_per_s:,.0f} steps/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, at_most) + 1) if n % d == 0)


def runs_mesh(num_configs: int, num_seeds: int, devices=None) -> Mesh:
    """The devices a group runs on, as a (configs, seeds) grid: seeds are split evenly over as many
    devices as divide their number, then configs over what is left. Runs never communicate, so each
    device simply runs its share of the vmapped batch. Several processes (jax.distributed) share one
    global grid with the same number of devices from each (see split_over_processes)."""
    devices = jax.devices() if devices is None else devices
    if jax.process_count() > 1:
        processes = sorted({d.process_index for d in devices})
        local = {p: [d for d in devices if d.process_index == p] for p in processes}
        per_configs, per_seeds, per_process = split_over_processes(
            num_configs, num_seeds, len(processes), min(len(v) for v in local.values())
        )
        chosen = [d for p in processes for d in local[p][:per_process]]
    else:
        per_seeds = largest_divisor(num_seeds, len(devices))
        per_configs = largest_divisor(num_configs, len(devices) // per_seeds)
        chosen = devices[: per_configs * per_seeds]
    return Mesh(np.array(chosen).reshape(per_configs, per_seeds), ("configs", "seeds"))


def split_over_processes(num_configs: int, num_seeds: int, processes: int, local_devices: int) -> tuple[int, int, int]:
    """(configs split, seeds split, devices used per process) for the most devices that an even split
    allows with the same number from every process (each must hold a share); seeds are split first."""
    for per_process in range(local_devices, 0, -1):
        count = per_process * processes
        tilings = [
            (c, count // c)
            for c in range(1, count + 1)
            if count % c == 0 and num_configs % c == 0 and num_seeds % (count // c) == 0
        ]
        if tilings:
            per_configs, per_seeds = max(tilings, key=lambda t: t[1])
            return per_configs, per_seeds, per_process
    raise ConfigError(
        f"{num_configs} config(s) x {num_seeds} seed(s) cannot be split evenly over {processes} processes (each must "
        f"hold an equal share of the runs); use a multiple of {processes} seeds, or configs x seeds that {processes} "
        "processes can share evenly"
    )


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The ahead-of-time compiled pieces of a group's runs: no call can trigger a recompile."""

    init: Any  # (seed keys, configs) -> runs
    advance: Any  # (runs, configs) -> runs, one chunk of iterations; donates its input
    evaluate: Any  # (runs, configs) -> (runs, curve point); donates its input
    seconds: float
    run_shape: Any  # the runs' shapes, dtypes and shardings (what a checkpoint restores into)
    temporaries: int | None  # the programs' largest scratch space per device
    seed_sharding: NamedSharding
    config_sharding: NamedSharding
    shared_sharding: NamedSharding

    def inputs(self, keys, configs):
        """Seed keys and configs laid out as the programs take them (on every process's devices)."""
        return (distributed.to_global(keys, self.seed_sharding), distributed.to_global(configs, self.config_sharding))

    def iterations(self, n: int):
        return distributed.to_global(np.int32(n), self.shared_sharding)


def laid_out(mesh: Mesh, *axes: str) -> NamedSharding:
    """Arrays split over `mesh` along its named axes, one per leading array axis (none: replicated)."""
    return NamedSharding(mesh, PartitionSpec(*axes))


def jitted_init(trainer: driver.Trainer, mesh: Mesh):
    """The runs' initialisation (seed keys, stacked configs) -> run states, laid out on `mesh`."""
    return jax.jit(
        driver.over_seeds_and_configs(trainer.init, False),
        in_shardings=(laid_out(mesh, "seeds"), laid_out(mesh, "configs")),
        out_shardings=laid_out(mesh, "configs", "seeds"),
    )


def run_shape_of(trainer: driver.Trainer, keys, configs):
    """The shapes and dtypes of a group's run states ([configs, seeds] leading axes), by tracing only."""
    return jax.eval_shape(driver.over_seeds_and_configs(trainer.init, False), keys, configs)


def group_programs(trainer: driver.Trainer, keys, configs, mesh: Mesh) -> dict[str, tuple[Any, tuple]]:
    """The group's three jitted programs, each with the (abstract) arguments it is compiled for:
    init (seed keys, configs) -> runs; advance (runs, configs, iterations) -> runs, one chunk, donating its
    input; evaluate (runs, configs) -> (runs, curve point), donating its input (replay buffers are updated in
    place)."""
    runs, per_config, shared = laid_out(mesh, "configs", "seeds"), laid_out(mesh, "configs"), laid_out(mesh)
    init = jitted_init(trainer, mesh)
    advance = jax.jit(
        driver.over_seeds_and_configs(trainer.advance, True),
        in_shardings=(runs, per_config, shared),
        out_shardings=runs,
        donate_argnums=0,
    )
    evaluate = jax.jit(
        driver.over_seeds_and_configs(trainer.evaluate, True),
        in_shardings=(runs, per_config),
        out_shardings=runs,
        donate_argnums=0,
    )
    run_shape = run_shape_of(trainer, keys, configs)
    iterations = jax.ShapeDtypeStruct((), jnp.int32)
    return {
        "init": (init, (keys, configs)),
        "advance": (advance, (run_shape, configs, iterations)),
        "evaluate": (evaluate, (run_shape, configs)),
    }


def compile_group(trainer: driver.Trainer, keys, configs, mesh: Mesh, matmul_precision: str) -> Compiled:
    """Compile init, advance and evaluate for the runs laid out on `mesh` with the chosen float32 matmul
    precision, timing compilation apart."""
    t0 = time.perf_counter()
    # XLA compiles outside the GIL: each program compiles on a thread of its own while the next one is
    # traced and lowered (Python, one core), and the compiles overlap each other
    with jax.default_matmul_precision(matmul_precision), ThreadPoolExecutor(3) as pool:
        programs = group_programs(trainer, keys, configs, mesh)
        pending = [pool.submit(fn.lower(*args).compile) for fn, args in programs.values()]
        compiled = tuple(p.result() for p in pending)
    seconds = time.perf_counter() - t0
    runs = laid_out(mesh, "configs", "seeds")
    run_shape = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runs), programs["evaluate"][1][0]
    )
    return Compiled(
        *compiled,
        seconds,
        run_shape,
        compiled_temporaries(compiled),
        laid_out(mesh, "seeds"),
        laid_out(mesh, "configs"),
        laid_out(mesh),
    )


class Recorder:
    """Where a group's evaluation points go as they come (the sweep's results folder and checkpoints);
    this default keeps nothing and resumes nothing."""

    saves_run_state = False  # whether it checkpoints (a copy of the run state on the device while it does)

    def resume(self, run_shape) -> tuple[int, Any, float] | None:
        """(chunks done, run state, wall seconds so far) to continue from, or None to start afresh."""
        return None

    def point(
        self, chunks_done: int, rows: list[dict], metric_rows: list[dict], run, wall_s: float, last: bool
    ) -> None:
        """Evaluation point `chunks_done` (0: right after init) was reached with these rows."""


def prepare(group: Group, devices=None) -> tuple[driver.Trainer, jax.Array, Any, Mesh]:
    """What compile_group needs for a group: its trainer, seed keys, stacked configs and device mesh (over
    `devices`, by default all)."""
    agent = get_agent(group.agent)
    schedule = driver.make_schedule(agent, group.configs[0], group.num_evals)
    trainer = driver.Trainer(agent, make_env(group.env, group.backend), schedule, group.eval_episodes)
    return (
        trainer,
        driver.seed_keys(group.seeds),
        driver.stack_configs(group.configs),
        runs_mesh(len(group.configs), len(group.seeds), devices),
    )


def run_group(
    group: Group,
    progress: bool = True,
    recorder: Recorder | None = None,
    devices=None,
    device_memory_given: int | None = None,
) -> GroupResult:
    """Run a group chunk by chunk (on `devices`, by default all); `recorder` receives each evaluation point
    and may hand back a saved state to continue from. The result's rows are the points run by this call.
    Once compiled, a group that needs more memory than a device has (as reported, or
    `device_memory_given` bytes) is refused before it runs."""
    recorder = recorder or Recorder()
    trainer, keys, configs, mesh = prepare(group, devices)
    schedule = trainer.schedule
    note = schedule.note(group.num_evals, group.configs[0].total_steps)
    if note and distributed.is_writer():
        print(f"pgjax: note: {group.agent} on {group.env}: {note}", file=sys.stderr)
    fns = compile_group(trainer, keys, configs, mesh, group.matmul_precision)
    memory = run_state_memory(fns.run_shape, mesh.size, fns.temporaries, recorder.saves_run_state)
    check_fits(group, memory, device_memory(list(mesh.devices.flat), device_memory_given), mesh.size)

    n_runs = len(group.configs) * len(group.seeds)
    eval_steps = schedule.eval_steps()
    rows: list[dict] = []
    metrics: list[dict] = []
    bar = Progress(schedule.total_steps * n_runs, f"{group.agent} {group.env}", progress and distributed.is_writer())
    resumed = recorder.resume(fns.run_shape)
    t0 = time.perf_counter()

    def reached(chunks_done: int, run, point, wall_before: float) -> None:
        point = distributed.to_host(point)  # one host sync per evaluation point, never per step
        # dispatch is asynchronous: only now, with the point's values on the host, is its chunk done
        wall_s = wall_before + time.perf_counter() - t0
        new_rows = point_rows(group, int(eval_steps[chunks_done]), point, wall_s)
        new_metrics = point_metric_rows(group, int(eval_steps[chunks_done]), point.metrics) if chunks_done else []
        rows.extend(new_rows)
        metrics.extend(new_metrics)
        recorder.point(chunks_done, new_rows, new_metrics, run, wall_s, chunks_done == schedule.num_chunks)
        done_steps = int(eval_steps[chunks_done] - eval_steps[start - 1]) * n_runs
        bar.update(
            int(eval_steps[chunks_done] - (eval_steps[chunks_done - 1] if chunks_done else 0)) * n_runs,
            float(np.nanmean(point.eval_return_mean)),
            done_steps / max(time.perf_counter() - t0, 1e-9),
        )
        finals.update(returns=point.eval_return_mean, diverged=point.diverged, wall_s=wall_s)

    finals: dict = {}
    keys, configs = fns.inputs(keys, configs)
    if resumed is None:
        start, wall_before = 1, 0.0
        run, point = fns.evaluate(fns.init(keys, configs), configs)
        reached(0, run, point, wall_before)
    else:
        chunks_done, run, wall_before = resumed
        start = chunks_done + 1
        bar.update(int(eval_steps[chunks_done]) * n_runs, float("nan"), 0.0)
    for j in range(start - 1, schedule.num_chunks):
        run, point = fns.evaluate(fns.advance(run, configs, fns.iterations(schedule.chunk_iterations(j))), configs)
        reached(j + 1, run, point, wall_before)
    bar.close()
    return GroupResult(
        group=group,
        rows=rows,
        compile_s=fns.seconds,
        run_s=finals["wall_s"],
        env_steps=schedule.total_steps,
        final_returns=finals["returns"],
        diverged=finals["diverged"],
        devices=mesh.size,
        metric_rows=metrics,
        run=run,
        env_details=dict(trainer.env.details),
        memory=memory,
    )


def point_metric_rows(group: Group, env_steps: int, metrics: dict) -> list[dict]:
    """Tidy rows of the training metrics at one evaluation point (each the mean over the chunk before
    it); a vector metric gives one row per entry, named `name[i]`."""
    rows = []
    for name, values in sorted(metrics.items()):
        values = np.asarray(values)  # [configs, seeds, *entries]
        entries = list(np.ndindex(values.shape[2:]))
        for ci, cid in enumerate(group.config_ids):
            for si, seed in enumerate(group.seeds):
                for entry in entries:
                    rows.append(
                        {
                            **row_identity(group, cid, seed, env_steps),
                            "metric": name + "".join(f"[{i}]" for i in entry),
                            "value": float(values[(ci, si) + entry]),
                        }
                    )
    return rows


def row_identity(group: Group, config_id: str, seed: int, env_steps: int) -> dict:
    """The columns that say which run and point a curve or metric row belongs to."""
    return {
        "agent": group.agent,
        "env": group.env,
        "backend": group.backend,
        "config_id": config_id,
        "seed": seed,
        "env_steps": env_steps,
    }


def point_rows(group: Group, env_steps: int, point, wall_s: float) -> list[dict]:
    """The curve rows of one evaluation point, one per run."""
    rows = []
    for ci, cid in enumerate(group.config_ids):
        for si, seed in enumerate(group.seeds):
            rows.append(
                {
                    **row_identity(group, cid, seed, env_steps),
                    "wall_time_s": float(wall_s),
                    "eval_return_mean": float(point.eval_return_mean[ci, si]),
                    "eval_return_std": float(point.eval_return_std[ci, si]),
                    "train_return_mean": float(point.train_return_mean[ci, si]),
                    "status": "diverged" if point.diverged[ci, si] else "ok",
                }
            )
    return rows
