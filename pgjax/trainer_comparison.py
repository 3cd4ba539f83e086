"""`pgjax compare-brax`: Brax's own PPO trainer (`brax.training.agents.ppo.train`) with MuJoCo Playground's
tuned parameters for a dmc/ task, beside our `ppo` with the same preset (`--preset playground`), on one
machine in one sitting: compile time, training env steps per second, whole-command seconds, and the
deterministic policy's evaluation return at equal env steps. A benchmark: it records figures and asserts
nothing.

Brax trains one seed per call (a fresh program each, so each compiles again); ours trains every seed in one
vmapped program. Both run on every local device (Brax pmaps its envs, ours splits the seeds).
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

TASK = "CartpoleSwingup"
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


def steps_per_update(params: dict) -> int:
    """Env steps Brax's PPO collects per update: batch_size x num_minibatches unrolls of unroll_length."""
    return int(params["batch_size"] * params["num_minibatches"] * params["unroll_length"])


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


def brax_ppo_run(task: str, steps: int, num_evals: int, seed: int, eval_episodes: int, networks: str) -> dict:
    """One Brax `ppo.train` run: its evaluation curve and its own per-epoch timing."""
    import functools

    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo
    from mujoco_playground import wrapper

    from pgjax.envs.dmc_env import load_playground

    params = brax_ppo_params(task, steps, num_evals)
    if BRAX_NETWORKS[networks]:
        params["network_factory"] = functools.partial(brax_networks.make_ppo_networks, **BRAX_NETWORKS[networks])
    env, _ = load_playground(task, "jax")
    eval_env, _ = load_playground(task, "jax")
    points: list[dict] = []
    t0 = time.perf_counter()

    def progress(env_steps: int, metrics: dict) -> None:
        point = {"env_steps": int(env_steps), "wall_s": time.perf_counter() - t0,
                 "eval_return_mean": float(metrics["eval/episode_reward"])}
        if "training/sps" in metrics:  # the epoch's seconds, from Brax's own timing of it (evaluation apart)
            point["epoch_s"] = (point["env_steps"] - points[-1]["env_steps"]) / float(metrics["training/sps"])
            point["epoch_steps"] = point["env_steps"] - points[-1]["env_steps"]
        points.append(point)

    with brax_trainers_on_this_jax():
        brax_ppo.train(environment=env, eval_env=eval_env, wrap_env_fn=wrapper.wrap_for_brax_training,
                       progress_fn=progress, seed=seed, deterministic_eval=True, num_eval_envs=eval_episodes,
                       **params)
    return {"seed": seed, "networks": networks, "wall_s": time.perf_counter() - t0, "points": points}


def brax_timing(run: dict) -> dict:
    """From Brax's own timing of each training epoch (evaluations apart): the steady epoch's steps/s (the
    fastest), and the seconds the epochs took beyond it, which is compilation (Brax's first and, on this
    JAX, second epoch each compile)."""
    epochs = run["points"][1:]
    steady = min(epochs, key=lambda p: p["epoch_s"])
    return {"compile_s": sum(p["epoch_s"] - steady["epoch_s"] for p in epochs),
            "train_steps_per_s": steady["epoch_steps"] / steady["epoch_s"]}


def ours_ppo_run(task: str, steps: int, num_evals: int, seeds: list[int], eval_episodes: int) -> dict:
    """Our `ppo` with `--preset playground`, all seeds in one vmapped program."""
    from pgjax.presets import preset_overrides
    from pgjax.runner import make_group, run_group

    env = f"dmc/{task}"
    overrides = {**preset_overrides("playground", "ppo", env, steps), "total_steps": steps}
    (group,) = make_group("ppo", env, "jax", seeds, [overrides], num_evals=num_evals, eval_episodes=eval_episodes)
    t0 = time.perf_counter()
    result = run_group(group, progress=False)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "compile_s": result.compile_s, "run_s": result.run_s, "env_steps": result.env_steps,
            "rows": result.rows}


def compare(task: str, steps: int, num_evals: int, seeds: list[int], eval_episodes: int) -> dict:
    from pgjax.bench import fresh_compile_cache, provenance

    with fresh_compile_cache():  # every program compiles cold, as in a new user's first command
        ours = ours_ppo_run(task, steps, num_evals, seeds, eval_episodes)
        brax = {n: [brax_ppo_run(task, steps, num_evals, s, eval_episodes, n) for s in seeds] for n in BRAX_NETWORKS}
    n = len(seeds)
    summary = {
        "task": f"dmc/{task}", "seeds": seeds, "env_steps_per_seed": steps, "eval_episodes": eval_episodes,
        "brax_params": {k: v for k, v in brax_ppo_params(task, steps, num_evals).items()},
        "pgjax ppo --preset playground (64-64 actor and critic)": {
            "command_s": round(ours["wall_s"], 1), "compile_s": round(ours["compile_s"], 1),
            "run_s": round(ours["run_s"], 1), "train_steps_per_s": round(ours["env_steps"] * n / ours["run_s"]),
            "final_return": final_returns(ours["rows"], seeds)},
        **{f"brax ppo.train, {name} networks ({describe(name)})": brax_summary(runs) for name, runs in brax.items()},
        **provenance(),
    }
    curves = ours_curve_rows(ours["rows"]) + [row for runs in brax.values() for row in brax_curve_rows(runs)]
    return {"summary": summary, "curves": curves}


def describe(networks: str) -> str:
    if BRAX_NETWORKS[networks] is None:
        return "policy 4 x 32, value 5 x 256"
    sizes = BRAX_NETWORKS[networks]
    return f"policy {sizes['policy_hidden_layer_sizes']}, value {sizes['value_hidden_layer_sizes']}"


def brax_summary(runs: list[dict]) -> dict:
    timings = [brax_timing(r) for r in runs]
    return {"command_s": round(sum(r["wall_s"] for r in runs), 1),
            "compile_s_per_seed": round(statistics.mean(t["compile_s"] for t in timings), 1),
            "train_steps_per_s": round(statistics.mean(t["train_steps_per_s"] for t in timings)),
            "final_return": [round(r["points"][-1]["eval_return_mean"], 1) for r in runs]}


def final_returns(rows: list[dict], seeds: list[int]) -> list[float]:
    last = max(r["env_steps"] for r in rows)
    by_seed = {r["seed"]: r["eval_return_mean"] for r in rows if r["env_steps"] == last}
    return [round(by_seed[s], 1) for s in seeds]


def brax_curve_rows(runs: list[dict]) -> list[dict]:
    return [{"trainer": f"brax ppo.train ({r['networks']} networks)", "seed": r["seed"], "env_steps": p["env_steps"],
             "eval_return_mean": round(p["eval_return_mean"], 2)} for r in runs for p in r["points"]]


def ours_curve_rows(rows: list[dict]) -> list[dict]:
    return [{"trainer": "pgjax ppo", "seed": r["seed"], "env_steps": r["env_steps"],
             "eval_return_mean": round(r["eval_return_mean"], 2)} for r in rows]


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(result["summary"], indent=1) + "\n")
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result["curves"][0]))
        writer.writeheader()
        writer.writerows(result["curves"])
    plot(result, out / "returns.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for trainer in dict.fromkeys(r["trainer"] for r in result["curves"]):
        rows = [r for r in result["curves"] if r["trainer"] == trainer]
        steps = sorted({r["env_steps"] for r in rows})
        values = [[r["eval_return_mean"] for r in rows if r["env_steps"] == s] for s in steps]
        mean = np.array([np.mean(v) for v in values])
        ax.plot(steps, mean, marker="o", label=f"{trainer} (mean of {len(values[-1])} seeds)")
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
    s = result["summary"]
    ax.set_title(f"{s['task']}, Playground's PPO parameters ({s['machine']['kind']} x{s['machine']['count']})",
                 fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (band: min-max over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args) -> int:
    from pgjax.config import ConfigError
    from pgjax.names import check_env

    if args.steps < 1 or args.num_evals < 1 or args.seeds < 1:
        raise ConfigError("--steps, --num-evals and --seeds must be >= 1")
    check_env(f"dmc/{args.task}")
    result = compare(args.task, args.steps, args.num_evals, list(range(args.seeds)), args.eval_episodes)
    write(result, Path(args.out))
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {args.out}")
    return 0
