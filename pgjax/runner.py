"""Running a group of training runs: its compiled programs advanced chunk by chunk (one chunk per evaluation
point) with a progress bar, each point's tidy curve and metric rows handed to a recorder as it comes."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import numpy as np

from pgjax import distributed
from pgjax.groups import Group
from pgjax.memory import MemoryEstimate, check_fits, device_memory, run_state_memory
from pgjax.programs import compile_group, prepare
from pgjax.progress import Progress


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
    keys, configs = fns.inputs(keys, configs)
    if resumed is None:
        first, run, wall_before = 0, None, 0.0
    else:
        chunks_done, run, wall_before = resumed
        first = chunks_done + 1
        bar.update(int(eval_steps[chunks_done]) * n_runs, float("nan"), 0.0)
    from_steps = int(eval_steps[max(first - 1, 0)])  # where this call's steps/s counts from
    for k in range(first, schedule.num_chunks + 1):  # evaluation point k: 0 right after init, k after chunk k
        if k == 0:
            run = fns.init(keys, configs)
        else:
            run = fns.advance(run, configs, fns.iterations(schedule.chunk_iterations(k - 1)))
        run, point = fns.evaluate(run, configs)
        point = distributed.to_host(point)  # one host sync per evaluation point, never per step
        # dispatch is asynchronous: only now, with the point's values on the host, is its chunk done
        wall_s = wall_before + time.perf_counter() - t0
        steps = int(eval_steps[k])
        new_rows = point_rows(group, steps, point, wall_s)
        new_metrics = point_metric_rows(group, steps, point.metrics) if k else []
        rows.extend(new_rows)
        metrics.extend(new_metrics)
        recorder.point(k, new_rows, new_metrics, run, wall_s, k == schedule.num_chunks)
        bar.update(
            (steps - (int(eval_steps[k - 1]) if k else 0)) * n_runs,
            float(np.nanmean(point.eval_return_mean)),
            (steps - from_steps) * n_runs / max(time.perf_counter() - t0, 1e-9),
        )
    bar.close()
    return GroupResult(
        group=group,
        rows=rows,
        compile_s=fns.seconds,
        run_s=wall_s,
        env_steps=schedule.total_steps,
        final_returns=point.eval_return_mean,
        diverged=point.diverged,
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
