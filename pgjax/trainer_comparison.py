"""`pgjax compare-brax`: Brax's own PPO or SAC trainer (`brax.training.agents.{ppo,sac}.train`) with MuJoCo
Playground's tuned parameters for a dmc/ task, beside our `ppo` or `sac` with the same parameters, on one
machine in one sitting: compile time, training env steps per second, whole-command seconds, and the
deterministic policy's evaluation return at equal env steps. Ours runs with our own choices
(`--preset playground`, trainer "ours") or with Brax's (`--preset brax`, trainer "ours-brax"); with
"ours-brax" and "brax" both run, the report gives the difference of their mean final returns with a 95 %
bootstrap interval (the parity check). A benchmark: it records figures and asserts nothing.

Brax trains one seed per call, ours every seed in one vmapped program, on the same number of devices. Each
finished piece is a line of `pieces.jsonl`, so a repeated command runs only what is missing. How the sides
are set up and measured: docs/speed.md (the Brax trainer comparison); the parity runs: docs/correctness.md.
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

# Brax's PPO networks: as Playground trains them (brax's defaults: policy 4 x 32, value 5 x 256, swish), and
# sized as ours (64-64 policy and value, swish), which compares the trainers at equal network cost. Brax's SAC
# networks are the size of ours (256-256) already.
BRAX_NETWORKS = {
    "published": None,
    "ours": {"policy_hidden_layer_sizes": (64, 64), "value_hidden_layer_sizes": (64, 64)},
}
OURS_SIZED = {"ppo": {"hidden_sizes": (64, 64), "value_hidden_sizes": (64, 64)}, "sac": {}}
PARITY_BAND = 50.0  # returns: 5 % of DMC's 0-1000 scale


def brax_params(agent: str, task: str, steps: int, num_evals: int) -> dict:
    """Playground's tuned Brax PPO or SAC parameters for `task`, with the budget and evaluation layout of
    this comparison: `steps` env steps, `num_evals` evaluations after the initial one, and (PPO) no extra
    resets between them (Playground's 10 resets per evaluation make one evaluation period 10 updates, more
    than a CPU budget holds)."""
    from mujoco_playground.config import dm_control_suite_params

    if agent == "ppo":
        params = dict(dm_control_suite_params.brax_ppo_config(task))
        params.update(num_resets_per_eval=0)
    else:
        params = dict(dm_control_suite_params.brax_sac_config(task))
        params.pop("num_resets_per_eval", None)
    params.update(num_timesteps=steps, num_evals=num_evals + 1)
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


def brax_network_factory(agent: str, settings: dict, networks: str):
    """Brax's network factory for this run: PPO's resized to ours where asked; SAC's with Playground's
    network `settings` (its critics' layer norm)."""
    import functools

    if agent == "ppo":
        from brax.training.agents.ppo import networks as brax_networks

        sizes = BRAX_NETWORKS[networks]
        return functools.partial(brax_networks.make_ppo_networks, **sizes) if sizes else None
    from brax.training.agents.sac import networks as brax_networks

    return functools.partial(brax_networks.make_sac_networks, **dict(settings))


def brax_run(
    agent: str, task: str, steps: int, num_evals: int, seed: int, eval_episodes: int, networks: str, devices: int
) -> dict:
    """One Brax `ppo.train` or `sac.train` run on `devices` local devices: its evaluation curve, each
    point's wall time and Brax's own timing of each training epoch."""
    from brax.training.agents.ppo import train as brax_ppo
    from brax.training.agents.sac import train as brax_sac
    from mujoco_playground import wrapper

    from pgjax.envs.dmc_env import load_playground

    params = {**brax_params(agent, task, steps, num_evals), "max_devices_per_host": devices}
    if factory := brax_network_factory(agent, params.pop("network_factory", {}), networks):
        params["network_factory"] = factory
    t0 = time.perf_counter()
    env, _ = load_playground(task, "jax")
    eval_env, _ = load_playground(task, "jax")
    points: list[dict] = []

    def progress(env_steps: int, metrics: dict) -> None:
        # the metrics are host floats: Brax has waited for the epoch and the evaluation before calling
        point = {
            "env_steps": int(env_steps),
            "wall_s": time.perf_counter() - t0,
            "eval_return_mean": float(metrics["eval/episode_reward"]),
        }
        if "training/sps" in metrics:  # the epoch's seconds, from Brax's own timing of it (evaluation apart)
            point["epoch_s"] = (point["env_steps"] - points[-1]["env_steps"]) / float(metrics["training/sps"])
        points.append(point)

    train = brax_ppo.train if agent == "ppo" else brax_sac.train
    with brax_trainers_on_this_jax():
        train(
            environment=env,
            eval_env=eval_env,
            wrap_env_fn=wrapper.wrap_for_brax_training,
            progress_fn=progress,
            seed=seed,
            deterministic_eval=True,
            num_eval_envs=eval_episodes,
            **params,
        )
    command_s = time.perf_counter() - t0
    return {
        "seeds": [seed],
        "command_s": command_s,
        **brax_timing(points, command_s),
        "curves": {str(seed): [[p["env_steps"], round(p["eval_return_mean"], 2)] for p in points]},
    }


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
    return {
        "compile_s": compile_s,
        "run_s": command_s - compile_s,
        "env_steps": points[-1]["env_steps"],
        "epoch_steps_per_s": (epochs[0]["env_steps"] - points[0]["env_steps"]) / steady_epoch,
    }


def ours_run(
    agent: str, preset: str, task: str, steps: int, num_evals: int, seeds: list[int], eval_episodes: int, devices: int
) -> dict:
    """Our `agent` with `--preset {preset}` (with Brax's choices, networks sized as Brax's in this comparison),
    all seeds in one vmapped program (on `devices`, which the runner chooses the same way); run_s is measured
    with the points' values on the host (evaluations and the first init included)."""
    from pgjax.groups import make_group
    from pgjax.presets import preset_overrides
    from pgjax.runner import run_group

    env = f"dmc/{task}"
    sized = OURS_SIZED[agent] if preset == "brax" else {}
    overrides = {**preset_overrides(preset, agent, env, steps), **sized, "total_steps": steps}
    t0 = time.perf_counter()
    (group,) = make_group(agent, env, "jax", seeds, [overrides], num_evals=num_evals, eval_episodes=eval_episodes)
    result = run_group(group, progress=False)
    curves = {
        str(s): [[r["env_steps"], round(r["eval_return_mean"], 2)] for r in result.rows if r["seed"] == s]
        for s in seeds
    }
    return {
        "seeds": seeds,
        "command_s": time.perf_counter() - t0,
        "compile_s": result.compile_s,
        "run_s": result.run_s,
        "env_steps": result.env_steps,
        "curves": curves,
    }


def brax_piece(networks: str):
    def run(agent, task, steps, evals, seeds, episodes, devices):
        return brax_run(agent, task, steps, evals, seeds[0], episodes, networks, devices)

    return run


def ours_piece(preset: str):
    def run(agent, task, steps, evals, seeds, episodes, devices):
        return ours_run(agent, preset, task, steps, evals, seeds, episodes, devices)

    return run


# trainer name: ({agent: what it is}, how one piece runs:
#                (agent, task, steps, num_evals, seeds, eval_episodes, devices) -> run)
TRAINERS = {
    "ours": (
        {"ppo": "pgjax ppo --preset playground (64-64 actor and critic)", "sac": "pgjax sac --preset playground"},
        ours_piece("playground"),
    ),
    "ours-brax": (
        {
            "ppo": "pgjax ppo --preset brax, 64-64 policy and value (Brax's choices)",
            "sac": "pgjax sac --preset brax (Brax's choices)",
        },
        ours_piece("brax"),
    ),
    "brax": (
        {
            "ppo": "brax ppo.train, networks as ours (64-64 policy and value)",
            "sac": "brax sac.train (256-256, as ours)",
        },
        brax_piece("ours"),
    ),
    "brax-published": (
        {"ppo": "brax ppo.train, Playground's published networks (policy 4 x 32, value 5 x 256)"},
        brax_piece("published"),
    ),
}
OURS_TRAINERS = ("ours", "ours-brax")  # every seed in one program


def devices_for(num_seeds: int) -> int:
    """The local devices our group of `num_seeds` runs on, which Brax's calls are given too."""
    from pgjax.layout import runs_mesh

    return runs_mesh(1, num_seeds).size


def pieces(trainers: list[str], seeds: list[int]) -> list[tuple[str, list[int]]]:
    """Ours trains every seed in one program (one piece); Brax trains one seed per call (a piece each)."""
    return [
        (t, seeds) if t in OURS_TRAINERS else (t, [s])
        for t in trainers
        for s in ([None] if t in OURS_TRAINERS else seeds)
    ]


def piece_key(row: dict) -> tuple:
    return (
        row.get("agent", "ppo"),
        row["task"],
        row["trainer"],
        tuple(row["seeds"]),
        row["env_steps_per_seed"],
        row["num_evals"],
        row["eval_episodes"],
        row.get("devices"),
    )


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
            path.write_text(text[: text.rfind("\n") + 1])


def run_piece(
    agent: str, task: str, trainer: str, seeds: list[int], steps: int, num_evals: int, eval_episodes: int, devices: int
) -> dict:
    from pgjax.bench import fresh_compile_cache, provenance

    with fresh_compile_cache():  # every program compiles cold, as in a new user's first command
        run = TRAINERS[trainer][1](agent, task, steps, num_evals, seeds, eval_episodes, devices)
    round_s = {k: round(v, 1) for k, v in run.items() if k.endswith("_s")}
    return {
        "agent": agent,
        "task": f"dmc/{task}",
        "trainer": trainer,
        "seeds": seeds,
        "env_steps_per_seed": steps,
        "num_evals": num_evals,
        "eval_episodes": eval_episodes,
        "devices": devices,
        **run,
        **round_s,
        "steps_per_s": round(run["env_steps"] * len(seeds) / run["run_s"]),
        **provenance(),
    }


def label(row: dict) -> str:
    """A trainer on its number of devices: pieces on different hardware are never pooled."""
    devices = row.get("devices")
    return TRAINERS[row["trainer"]][0][row.get("agent", "ppo")] + (
        f", {devices} device{'s' * (devices > 1)}" if devices else ""
    )


def comparison_name(row: dict) -> str:
    """What a comparison is of: the agent on the task, at its budget."""
    return f"{row.get('agent', 'ppo')} on {row['task']}, {row['env_steps_per_seed']:,} steps"


def summary(rows: list[dict]) -> dict:
    """Per comparison and trainer, over its pieces: compile s per command, whole-command s for all its
    seeds, env steps per second outside compilation (evaluations included, on both sides), final returns;
    and the parity of ours with Brax's choices against Brax where both ran."""
    out: dict = {}
    for row in rows:
        task = out.setdefault(
            comparison_name(row),
            {"env_steps_per_seed": row["env_steps_per_seed"], "eval_episodes": row["eval_episodes"]},
        )
        entry = task.setdefault(
            label(row), {"commands": 0, "compile_s": [], "command_s": 0.0, "run_s": 0.0, "steps": 0, "final_return": {}}
        )
        entry["commands"] += 1
        entry["compile_s"].append(row["compile_s"])
        entry["command_s"] += row["command_s"]
        entry["run_s"] += row["run_s"]
        entry["steps"] += row["env_steps"] * len(row["seeds"])
        entry["final_return"].update({s: c[-1][1] for s, c in row["curves"].items()})
    for task in out.values():
        for name, e in list(task.items()):
            if isinstance(e, dict):
                task[name] = {
                    "commands": e["commands"],
                    "compile_s_per_command": round(statistics.mean(e["compile_s"]), 1),
                    "command_s_all_seeds": round(e["command_s"], 1),
                    "steps_per_s": round(e["steps"] / e["run_s"]),
                    "final_return": e["final_return"],
                    "final_return_mean": round(statistics.mean(e["final_return"].values()), 1),
                }
    for name, task in out.items():
        if check := parity(rows, name):
            task["parity"] = check
    return out


def parity(rows: list[dict], name: str) -> dict | None:
    """Ours with Brax's choices ("ours-brax") against Brax ("brax") on one comparison, over the seeds both
    have on equal hardware: mean final return's difference with its bootstrap 95 % interval. "parity" when
    the interval lies within ±PARITY_BAND, "different" when it lies wholly beyond it, else "undecided",
    with the seeds a side it would take (an interval narrows as 1/√seeds)."""
    from pgjax.aggregate import mean_difference

    finals: dict = {}
    for row in rows:
        if comparison_name(row) == name and row["trainer"] in ("ours-brax", "brax"):
            side = finals.setdefault((row["trainer"], row.get("devices")), {})
            side.update({int(s): c[-1][1] for s, c in row["curves"].items()})
    pairs = [
        (finals[("ours-brax", d)], finals[("brax", d)])
        for (t, d) in finals
        if t == "ours-brax" and ("brax", d) in finals
    ]
    if not pairs:
        return None
    ours, brax = pairs[0]
    seeds = sorted(set(ours) & set(brax))
    if len(seeds) < 2:
        return None
    diff, low, high = mean_difference([ours[s] for s in seeds], [brax[s] for s in seeds])
    half, band = (high - low) / 2, PARITY_BAND
    if -band <= low and high <= band:
        verdict, needed = "parity", len(seeds)
    elif low > band or high < -band:
        verdict, needed = "different", len(seeds)
    else:  # the seeds for an interval of this centre to fit inside the band, or to clear it
        room = abs(band - abs(diff))
        verdict, needed = "undecided", (int(np.ceil(len(seeds) * (half / room) ** 2)) if room > 0 else None)
    return {
        "seeds_a_side": len(seeds),
        "difference": round(diff, 1),
        "interval_95": [round(low, 1), round(high, 1)],
        "band": [-band, band],
        "verdict": verdict,
        "seeds_needed": needed,
    }


def curve_rows(rows: list[dict]) -> list[dict]:
    return [
        {
            "agent": row.get("agent", "ppo"),
            "task": row["task"],
            "trainer": label(row),
            "seed": int(seed),
            "env_steps": steps,
            "eval_return_mean": value,
        }
        for row in rows
        for seed, curve in row["curves"].items()
        for steps, value in curve
    ]


def write_report(rows: list[dict], out: Path) -> None:
    from pgjax.results import writing

    with writing(out / "comparison.json"):
        (out / "comparison.json").write_text(json.dumps(summary(rows), indent=1) + "\n")
    curves = curve_rows(rows)
    with writing(out / "curves.csv"), open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curves[0]))
        writer.writeheader()
        writer.writerows(curves)
    for agent, task in dict.fromkeys((r["agent"], r["task"]) for r in curves):
        plot(
            [r for r in curves if (r["agent"], r["task"]) == (agent, task)],
            agent,
            task,
            rows[-1]["machine"],
            out / f"returns-{agent}-{task.removeprefix('dmc/')}.png",
        )
    with writing(out / "table.md"):
        (out / "table.md").write_text(markdown_table(summary(rows)))


def markdown_table(table: dict) -> str:
    """The summary as docs/correctness.md shows it: one row per comparison and trainer, then each parity check."""
    lines = [
        "| comparison | trainer | seeds | compile s per command | env steps/s | whole command s | "
        "final return, mean | per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for name, task in table.items():
        for trainer, e in task.items():
            if isinstance(e, dict) and "final_return" in e:
                finals = ", ".join(f"{v:g}" for _, v in sorted(e["final_return"].items(), key=lambda kv: int(kv[0])))
                lines.append(
                    f"| {name} | {trainer} | {len(e['final_return'])} | {e['compile_s_per_command']} | "
                    f"{e['steps_per_s']:,} | {e['command_s_all_seeds']} | {e['final_return_mean']} | {finals} |"
                )
        if check := task.get("parity"):
            lo, hi = check["interval_95"]
            needed = (
                f", about {check['seeds_needed']} seeds a side to decide" if check["verdict"] == "undecided" else ""
            )
            checks.append(
                f"- {name}: ours with Brax's choices minus Brax, {check['seeds_a_side']} seeds a side: "
                f"{check['difference']:+g} [{lo:+g}, {hi:+g}] (95 % bootstrap); {check['verdict']} "
                f"within ±{check['band'][1]:g}{needed}"
            )
    return "\n".join(lines + ([""] + checks if checks else [])) + "\n"


def plot(curves: list[dict], agent: str, task: str, machine: dict, path: Path) -> None:
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
    ax.set_title(f"{agent} on {task}, Playground's parameters ({machine['kind']} x{machine['count']})", fontsize=9)
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
    if unknown := [t for t in trainers if args.agent not in TRAINERS.get(t, ({},))[0]]:
        known = [t for t, (what, _) in TRAINERS.items() if args.agent in what]
        raise ConfigError(f"unknown trainer(s) {', '.join(unknown)} for {args.agent}; choose from {', '.join(known)}")
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
            key = (
                args.agent,
                f"dmc/{args.task}",
                trainer,
                tuple(seeds),
                args.steps,
                args.num_evals,
                args.eval_episodes,
                devices,
            )
            if key in done:
                print(f"{trainer} seeds {seeds}: done before, kept")
                continue
            row = run_piece(
                args.agent, args.task, trainer, seeds, args.steps, args.num_evals, args.eval_episodes, devices
            )
            append_durably(out / "pieces.jsonl", json.dumps(row) + "\n")
            print(
                f"{trainer} seeds {seeds}: compile {row['compile_s']} s, command {row['command_s']} s, "
                f"{row['steps_per_s']:,} steps/s, final {[c[-1][1] for c in row['curves'].values()]}",
                flush=True,
            )
            write_report(read_pieces(out / "pieces.jsonl"), out)
    finally:
        lock.release()
    print(json.dumps(summary(read_pieces(out / "pieces.jsonl")), indent=1))
    print(f"wrote {out}")
    return 0
