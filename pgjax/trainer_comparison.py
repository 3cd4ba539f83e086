"""`pgjax compare-brax`: Brax's own PPO trainer (`brax.training.agents.ppo.train`) with MuJoCo Playground's
tuned parameters for a dmc/ task, beside our `ppo` with the same preset (`--preset playground`), on one
machine in one sitting: compile time, training env steps per second, whole-command seconds, and the
deterministic policy's evaluation return at equal env steps. A benchmark: it records figures and asserts
nothing.

Brax trains one seed per call (a fresh program each, so each compiles again); ours trains every seed in one
vmapped program, split over as many local devices as divide the number of seeds (one device for 3 seeds
on two). Brax's calls get the same number of devices (`max_devices_per_host`; it pmaps its envs over them),
so both sides run on equal hardware. (On two CPU devices Brax's pmapped reset of CheetahRun deadlocks
jaxlib 0.10's XLA:CPU: both intra-op pool threads wait inside a batched LAPACK Cholesky, `lapack_spotrf_ffi`,
for work queued on the pool they occupy.) Each finished
piece (ours: all seeds; Brax: one seed) is a line of `pieces.jsonl`, so a comparison of many CPU hours runs in
pieces: a repeated command runs only what is missing, and the table and plots are rebuilt from every line.
"""
from __future__ import annotations

import contextlib
import csv
import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np

# Brax's networks: as Playground trains them (brax's defaults: policy 4 x 32, value 5 x 256, swish), and
# sized as ours (64-64 policy and value, swish), which compares the trainers at equal network cost.
BRAX_NETWORKS = {"published": None, "ours": {"policy_hidden_layer_sizes": (64, 64), "value_hidden_layer_sizes": (64, 64)}}


def brax_ppo_params(task: str, steps: int, num_evals: int) -> dict:
    """Playground's tuned Brax PPO parameters for `task`, with the budget and evaluation layout of this
    comparison: `steps` env steps, `num_evals` evaluations after the initial one, and no extra resets
    between them (Playground's 10 resets per evaluation make one evaluation period 10 updates, more than a
    CPU budget holds)."""
    from mujoco_playground.config import dm_control_suite_params

    params = dict(dm_control_suite_params.brax_ppo_config(task))
    params.update(num_timesteps=steps, num_evals=num_evals + 1, num_resets_per_eval=0)
    return params


def device_put_replicated(tree, devices):
    """JAX's removed `device_put_replicated` from public APIs: one copy per device along a new leading
    axis, laid out as `pmap` lays out its outputs (so that Brax's first update does not compile twice)."""
    stacked = jax.tree.map(lambda x: np.stack([np.asarray(x)] * len(devices)), tree)
    return jax.pmap(lambda t: t, devices=devices)(stacked)


@contextlib.contextmanager
def brax_trainers_on_this_jax():
    """Brax <= 0.14.2's trainers call `jax.device_put_replicated`, which JAX 0.10 removed (google/brax#671):
    lend them the drop-in while they run."""
    lent = not hasattr(jax, "device_put_replicated")
    if lent:
        jax.device_put_replicated = device_put_replicated
    try:
        yield
    finally:
        if lent:
            del jax.device_put_replicated


def brax_ppo_run(task: str, steps: int, num_evals: int, seed: int, eval_episodes: int, networks: str,
                 devices: int) -> dict:
    """One Brax `ppo.train` run on `devices` local devices: its evaluation curve, each point's wall time and
    Brax's own timing of each training epoch."""
    import functools

    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo
    from mujoco_playground import wrapper

    from pgjax.envs.dmc_env import load_playground

    params = {**brax_ppo_params(task, steps, num_evals), "max_devices_per_host": devices}
    if BRAX_NETWORKS[networks]:
        params["network_factory"] = functools.partial(brax_networks.make_ppo_networks, **BRAX_NETWORKS[networks])
    t0 = time.perf_counter()
    env, _ = load_playground(task, "jax")
    eval_env, _ = load_playground(task, "jax")
    points: list[dict] = []

    def progress(env_steps: int, metrics: dict) -> None:
        # the metrics are host floats: Brax has waited for the epoch and the evaluation before calling
        point = {"env_steps": int(env_steps), "wall_s": time.perf_counter() - t0,
                 "eval_return_mean": float(metrics["eval/episode_reward"])}
        if "training/sps" in metrics:  # the epoch's seconds, from Brax's own timing of it (evaluation apart)
            point["epoch_s"] = (point["env_steps"] - points[-1]["env_steps"]) / float(metrics["training/sps"])
        points.append(point)

    with brax_trainers_on_this_jax():
        brax_ppo.train(environment=env, eval_env=eval_env, wrap_env_fn=wrapper.wrap_for_brax_training,
                       progress_fn=progress, seed=seed, deterministic_eval=True, num_eval_envs=eval_episodes,
                       **params)
    command_s = time.perf_counter() - t0
    return {"seeds": [seed], "command_s": command_s, **brax_timing(points, command_s),
            "curves": {str(seed): [[p["env_steps"], round(p["eval_return_mean"], 2)] for p in points]}}


def brax_timing(points: list[dict], command_s: float) -> dict:
    """Brax compiles its training epoch and its evaluator when first called; once compiled, an epoch takes
    as long as the fastest (Brax's own timing of it) and an evaluation as long as the fastest gap between
    points beyond its epoch. Compile is what the first calls took beyond those steady times: the first
    epochs' excess, and the first point's seconds (env set-up, init, the evaluator's compile and the first
    evaluation) beyond one steady evaluation."""
    epochs = points[1:]
    steady_epoch = min(p["epoch_s"] for p in epochs)
    steady_eval = min(b["wall_s"] - a["wall_s"] - b["epoch_s"] for a, b in zip(points, epochs))
    compile_s = sum(p["epoch_s"] - steady_epoch for p in epochs) + points[0]["wall_s"] - steady_eval
    return {"compile_s": compile_s, "run_s": command_s - compile_s, "env_steps": points[-1]["env_steps"],
            "epoch_steps_per_s": (epochs[0]["env_steps"] - points[0]["env_steps"]) / steady_epoch}


def ours_ppo_run(task: str, steps: int, num_evals: int, seeds: list[int], eval_episodes: int, devices: int) -> dict:
    """Our `ppo` with `--preset playground`, all seeds in one vmapped program (on `devices`, which the runner
    chooses the same way); run_s is measured with the points' values on the host (evaluations and the first
    init included)."""
    from pgjax.presets import preset_overrides
    from pgjax.runner import make_group, run_group

    env = f"dmc/{task}"
    overrides = {**preset_overrides("playground", "ppo", env, steps), "total_steps": steps}
    t0 = time.perf_counter()
    (group,) = make_group("ppo", env, "jax", seeds, [overrides], num_evals=num_evals, eval_episodes=eval_episodes)
    result = run_group(group, progress=False)
    curves = {str(s): [[r["env_steps"], round(r["eval_return_mean"], 2)] for r in result.rows if r["seed"] == s]
              for s in seeds}
    return {"seeds": seeds, "command_s": time.perf_counter() - t0, "compile_s": result.compile_s,
            "run_s": result.run_s, "env_steps": result.env_steps, "curves": curves}


def brax_piece(networks: str):
    def run(task, steps, evals, seeds, episodes, devices):
        return brax_ppo_run(task, steps, evals, seeds[0], episodes, networks, devices)

    return run


# trainer name: (what it is, how one piece runs: (task, steps, num_evals, seeds, eval_episodes, devices) -> run)
TRAINERS = {
    "ours": ("pgjax ppo --preset playground (64-64 actor and critic)", ours_ppo_run),
    "brax": ("brax ppo.train, networks as ours (64-64 policy and value)", brax_piece("ours")),
    "brax-published": ("brax ppo.train, Playground's published networks (policy 4 x 32, value 5 x 256)",
                       brax_piece("published")),
}


def devices_for(num_seeds: int) -> int:
    """The local devices our group of `num_seeds` runs on, which Brax's calls are given too."""
    from pgjax.runner import runs_mesh

    return runs_mesh(1, num_seeds).size


def pieces(trainers: list[str], seeds: list[int]) -> list[tuple[str, list[int]]]:
    """Ours trains every seed in one program (one piece); Brax trains one seed per call (a piece each)."""
    return [(t, seeds) if t == "ours" else (t, [s]) for t in trainers for s in ([None] if t == "ours" else seeds)]


def piece_key(row: dict) -> tuple:
    return row["task"], row["trainer"], tuple(row["seeds"]), row["env_steps_per_seed"], row["num_evals"], \
        row["eval_episodes"], row.get("devices")


def read_pieces(path: Path) -> list[dict]:
    """The finished pieces (a line cut short by a killed command is left out, and run again)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def drop_cut_off_line(path: Path) -> None:
    """A killed command can leave its last line cut short; remove it so the next piece starts a line."""
    from pgjax.results import writing

    text = path.read_text() if path.exists() else ""
    if text and not text.endswith("\n"):
        with writing(path):
            path.write_text(text[:text.rfind("\n") + 1])


def run_piece(task: str, trainer: str, seeds: list[int], steps: int, num_evals: int, eval_episodes: int,
              devices: int) -> dict:
    from pgjax.bench import fresh_compile_cache, provenance

    with fresh_compile_cache():  # every program compiles cold, as in a new user's first command
        run = TRAINERS[trainer][1](task, steps, num_evals, seeds, eval_episodes, devices)
    round_s = {k: round(v, 1) for k, v in run.items() if k.endswith("_s")}
    return {"task": f"dmc/{task}", "trainer": trainer, "seeds": seeds, "env_steps_per_seed": steps, "num_evals": num_evals,
            "eval_episodes": eval_episodes, "devices": devices, **run, **round_s,
            "steps_per_s": round(run["env_steps"] * len(seeds) / run["run_s"]), **provenance()}


def label(row: dict) -> str:
    """A trainer on its number of devices: pieces on different hardware are never pooled."""
    devices = row.get("devices")
    return TRAINERS[row["trainer"]][0] + (f", {devices} device{'s' * (devices > 1)}" if devices else "")


def summary(rows: list[dict]) -> dict:
    """Per task and trainer, over its pieces: compile s per command, whole-command s for all its seeds,
    env steps per second outside compilation (evaluations included, on both sides), final returns."""
    out: dict = {}
    for row in rows:
        task = out.setdefault(row["task"], {"env_steps_per_seed": row["env_steps_per_seed"],
                                            "eval_episodes": row["eval_episodes"]})
        entry = task.setdefault(label(row), {"commands": 0, "compile_s": [], "command_s": 0.0, "run_s": 0.0,
                                             "steps": 0, "final_return": {}})
        entry["commands"] += 1
        entry["compile_s"].append(row["compile_s"])
        entry["command_s"] += row["command_s"]
        entry["run_s"] += row["run_s"]
        entry["steps"] += row["env_steps"] * len(row["seeds"])
        entry["final_return"].update({s: c[-1][1] for s, c in row["curves"].items()})
    for task in out.values():
        for name, e in list(task.items()):
            if isinstance(e, dict):
                task[name] = {"commands": e["commands"], "compile_s_per_command": round(statistics.mean(e["compile_s"]), 1),
                              "command_s_all_seeds": round(e["command_s"], 1),
                              "steps_per_s": round(e["steps"] / e["run_s"]),
                              "final_return": e["final_return"],
                              "final_return_mean": round(statistics.mean(e["final_return"].values()), 1)}
    return out


def curve_rows(rows: list[dict]) -> list[dict]:
    return [{"task": row["task"], "trainer": label(row), "seed": int(seed), "env_steps": steps,
             "eval_return_mean": value}
            for row in rows for seed, curve in row["curves"].items() for steps, value in curve]


def write_report(rows: list[dict], out: Path) -> None:
    from pgjax.results import writing

    with writing(out / "comparison.json"):
        (out / "comparison.json").write_text(json.dumps(summary(rows), indent=1) + "\n")
    curves = curve_rows(rows)
    with writing(out / "curves.csv"), open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curves[0]))
        writer.writeheader()
        writer.writerows(curves)
    for task in dict.fromkeys(r["task"] for r in curves):
        plot([r for r in curves if r["task"] == task], task, rows[-1]["machine"], out / f"returns-{task.removeprefix('dmc/')}.png")


def plot(curves: list[dict], task: str, machine: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for trainer in dict.fromkeys(r["trainer"] for r in curves):
        rows = [r for r in curves if r["trainer"] == trainer]
        steps = sorted({r["env_steps"] for r in rows})
        values = [[r["eval_return_mean"] for r in rows if r["env_steps"] == s] for s in steps]
        mean = np.array([np.mean(v) for v in values])
        ax.plot(steps, mean, marker="o", label=f"{trainer} (mean of {len(values[-1])} seeds)")
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
    ax.set_title(f"{task}, Playground's PPO parameters ({machine['kind']} x{machine['count']})", fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (band: min-max over seeds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args) -> int:
    from pgjax.config import ConfigError
    from pgjax.names import check_env
    from pgjax.results import FolderLock, append_durably

    if args.steps < 1 or args.num_evals < 1 or args.seeds < 1:
        raise ConfigError("--steps, --num-evals and --seeds must be >= 1")
    trainers = args.trainers.split(",")
    if unknown := [t for t in trainers if t not in TRAINERS]:
        raise ConfigError(f"unknown trainer(s) {', '.join(unknown)}; choose from {', '.join(TRAINERS)}")
    check_env(f"dmc/{args.task}")
    out = Path(args.out)
    lock = FolderLock(out)
    if refused := lock.take():
        raise ConfigError(refused)
    try:
        drop_cut_off_line(out / "pieces.jsonl")
        done = {piece_key(r) for r in read_pieces(out / "pieces.jsonl")}
        devices = devices_for(args.seeds)
        for trainer, seeds in pieces(trainers, list(range(args.seeds))):
            key = (f"dmc/{args.task}", trainer, tuple(seeds), args.steps, args.num_evals, args.eval_episodes, devices)
            if key in done:
                print(f"{trainer} seeds {seeds}: done before, kept")
                continue
            row = run_piece(args.task, trainer, seeds, args.steps, args.num_evals, args.eval_episodes, devices)
            append_durably(out / "pieces.jsonl", json.dumps(row) + "\n")
            print(f"{trainer} seeds {seeds}: compile {row['compile_s']} s, command {row['command_s']} s, "
                  f"{row['steps_per_s']:,} steps/s, final {[c[-1][1] for c in row['curves'].values()]}", flush=True)
            write_report(read_pieces(out / "pieces.jsonl"), out)
    finally:
        lock.release()
    print(json.dumps(summary(read_pieces(out / "pieces.jsonl")), indent=1))
    print(f"wrote {out}")
    return 0
