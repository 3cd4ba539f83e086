"""`pgjax bench`: every agent on gymnax Pendulum with vmapped seeds
(compile s, run s, env steps/s, peak memory, final return), and the Brax adapter's stepping speed beside
bare Brax's on hopper. A benchmark, never a test."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import resource
import tempfile
import time
from pathlib import Path

import jax

from pgjax.defaults import DEFAULT_NUM_EVALS
from pgjax.groups import make_group
from pgjax.programs import compile_group, prepare
from pgjax.results import append_durably, device_info, git_commit, versions
from pgjax.runner import run_group

# The configurations of the speed targets (docs/speed.md: 2-core CPU, PPO 8 x 1M, SAC 8 x 40k).
PPO = {"num_envs": 64, "rollout_length": 64, "num_epochs": 10, "num_minibatches": 8, "hidden_sizes": "64,64"}
SAC = {"num_envs": 1, "gradient_steps": 1, "batch_size": 256, "hidden_sizes": "64,64", "warmup_steps": 1000}
# DSAC-T on SAC's bench configuration, networks included (ReLU), so the line compares the algorithms;
# its paper default, the exact erf GELU, alone takes the run from ~1.1x to ~2.2x SAC's on XLA:CPU.
DSACT = {**SAC, "activation": "relu"}
# MDPO-on on PPO's layout (envs, rollout, networks, budget) with its own update: m = 10 full-batch policy
# steps and 5 value epochs of 16 minibatches; MDPO-off on SAC's configuration.
MDPO_ON = {"num_envs": 64, "rollout_length": 64, "hidden_sizes": "64,64"}
MDPO_OFF = SAC
# PMOE on its base agents' configurations with its default K (4 experts off-policy, 5 on-policy); PMOE-PPO
# keeps its own update layout (10 epochs of 32 minibatches, as the reference) on PPO's rollout layout.
PMOE_SAC = SAC
PMOE_PPO = MDPO_ON
# PG-Rainbow on PPO's configuration exactly: its extra cost is the IQN, the features and the distilled value.
PG_RAINBOW = PPO
# N-HARPG with its own defaults (batches at θ_t and θ̂_t, no critic, no Adam), on PPO's budget.
NHARPG: dict = {}
# Evaluation points per run (equal chunks here, though the schedule allows uneven ones):
# PPO 1M // 4096 = 244 iterations = 4 x 61 (999,424 steps, as many as purejaxrl's 1e6 // 4096 updates),
# SAC 40k - 1k warm-up = 39,000 iterations = 10 x 3,900.
NUM_EVALS = {
    "ppo": 4,
    "sac": 10,
    "dsact": 10,
    "mdpo_on": 4,
    "mdpo_off": 10,
    "pmoe_sac": 10,
    "pmoe_ppo": 4,
    "pg_rainbow": 4,
    "nharpg": 4,
}
# name: (agent config, the bench's budget argument)
BENCHES = {
    "ppo": (PPO, "ppo_steps"),
    "sac": (SAC, "sac_steps"),
    "dsact": (DSACT, "sac_steps"),
    "mdpo_on": (MDPO_ON, "ppo_steps"),
    "mdpo_off": (MDPO_OFF, "sac_steps"),
    "pmoe_sac": (PMOE_SAC, "sac_steps"),
    "pmoe_ppo": (PMOE_PPO, "ppo_steps"),
    "pg_rainbow": (PG_RAINBOW, "ppo_steps"),
    "nharpg": (NHARPG, "ppo_steps"),
}


def peak_memory_mb() -> float:
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS, KiB on Linux


@contextlib.contextmanager
def fresh_compile_cache():
    """A temporary, empty persistent compilation cache: each bench's first compile is cold and its second
    is loaded from disk, so the line shows what the cache saves a repeated or resumed command."""
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_compilation_cache_dir
    with tempfile.TemporaryDirectory() as folder:
        compilation_cache.reset_cache()
        compilation_cache.set_cache_dir(folder)
        try:
            yield
        finally:
            compilation_cache.reset_cache()
            compilation_cache.set_cache_dir(before)


def compile_from_cache_s(group) -> float:
    """Compile seconds of the group's programs again, with every in-memory cache dropped."""
    jax.clear_caches()
    return compile_group(*prepare(group), group.matmul_precision).seconds


def bench_group(agent: str, overrides: dict, seeds: int, steps: int, num_evals: int):
    (group,) = make_group(
        agent,
        "gymnax/Pendulum-v1",
        None,
        list(range(seeds)),
        [{**overrides, "total_steps": steps}],
        num_evals=num_evals,
        eval_episodes=8,
    )
    return group


def bench_one(agent: str, overrides: dict, seeds: int, steps: int) -> dict:
    group = bench_group(agent, overrides, seeds, steps, NUM_EVALS[agent])
    result = run_group(group, progress=False)
    return {
        "agent": agent,
        "env": group.env,
        "seeds": seeds,
        "steps_per_seed": result.env_steps,
        "compile_s": round(result.compile_s, 2),
        "compile_from_cache_s": round(compile_from_cache_s(group), 2),
        "run_s": round(result.run_s, 2),
        "env_steps_per_s": round(result.steps_per_s),
        "peak_memory_mb": round(peak_memory_mb()),
        "final_return": round(float(result.final_returns.mean()), 1),
        "device": f"{jax.devices()[0].device_kind} x{result.devices}",
        "jax": jax.__version__,
    }


def device_counts(available: int) -> list[int]:
    """1, 2, 4, ... up to what there is, and all of them."""
    return sorted({2**i for i in range(available.bit_length()) if 2**i <= available} | {available})


def bench_scaling(seeds: int, steps: int) -> list[dict]:
    """The PPO bench's group on 1, 2, 4, ... of this process's devices: seconds and env steps/s per count
    (the runs never communicate, so the ideal is linear)."""
    group = bench_group("ppo", PPO, seeds, steps, NUM_EVALS["ppo"])
    rows = []
    for count in device_counts(len(jax.local_devices())):
        result = run_group(group, progress=False, devices=jax.local_devices()[:count])
        rows.append(
            {
                "bench": "scaling",
                "agent": "ppo",
                "env": group.env,
                "seeds": seeds,
                "steps_per_seed": result.env_steps,
                "devices_asked": count,
                "devices_used": result.devices,
                "compile_s": round(result.compile_s, 2),
                "run_s": round(result.run_s, 2),
                "env_steps_per_s": round(result.steps_per_s),
                "speedup": round(result.steps_per_s / rows[0]["env_steps_per_s"], 3) if rows else 1.0,
                "device": jax.devices()[0].device_kind,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_checkpoints(agent: str, overrides: dict, seeds: int, steps: int, every: int | None) -> dict:
    """Run time without and with what a sweep does at the default number of evaluation points: rows
    appended at every point, the whole run state checkpointed at the default interval (`every`
    None) or every point (1)."""
    from pgjax.results import ResultsFolder
    from pgjax.sweep import FolderRecorder, group_key, group_plan

    group = bench_group(agent, overrides, seeds, steps, DEFAULT_NUM_EVALS)
    plain = run_group(group, progress=False).run_s
    with tempfile.TemporaryDirectory() as folder:
        recorder = FolderRecorder(
            ResultsFolder(Path(folder)), group, group_key(group_plan(group)), every, False, lambda *_: None
        )
        checkpointed = run_group(group, progress=False, recorder=recorder).run_s
        recorder.checkpoints.close()
        size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    return {
        "bench": "checkpoint_overhead",
        "agent": agent,
        "seeds": seeds,
        "steps_per_seed": steps,
        "evaluation_points": DEFAULT_NUM_EVALS + 1,
        "checkpoint_every": every or "default (60 s)",
        "checkpoints_saved": recorder.checkpoints.saves,
        "run_s": round(plain, 2),
        "run_s_checkpointed": round(checkpointed, 2),
        "overhead": round(checkpointed / plain - 1, 4),
        "checkpoint_mb": round(size / 2**20, 1),
        "device": f"{jax.devices()[0].device_kind}",
        "jax": jax.__version__,
    }


# The compile breakdown's groups (agent, env, preset, overrides): Playground's PPO parameters on two DMC
# tasks, one seed (what compare-brax trains), and the PPO and SAC benches' groups on Pendulum.
COMPILE_CASES = (
    ("ppo", "dmc/CartpoleSwingup", "playground", {}),
    ("ppo", "dmc/CheetahRun", "playground", {}),
    ("ppo", "gymnax/Pendulum-v1", None, PPO),
    ("sac", "gymnax/Pendulum-v1", None, SAC),
)


def physics_copies(jaxpr) -> dict[str, int]:
    """Call sites of the env's physics reset and step in a program (XLA compiles a copy of each)."""
    from pgjax.envs.pooled import PHYSICS_RESET, PHYSICS_STEP

    counts = {PHYSICS_RESET: 0, PHYSICS_STEP: 0}

    def walk(j):
        for eqn in j.eqns:
            if eqn.params.get("name") in counts:
                counts[eqn.params["name"]] += 1
                continue
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jaxpr)
    return counts


@contextlib.contextmanager
def no_persistent_cache():
    """No persistent compilation cache while it lasts: every compile is cold, the second as the first."""
    from jax.experimental.compilation_cache import compilation_cache

    before = jax.config.jax_compilation_cache_dir
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        yield
    finally:
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", before)


def compile_breakdown(
    agent: str, env: str, preset: str | None, overrides: dict, seeds: int = 1, steps: int = 4_915_200
) -> dict:
    """Where a group's cold compile goes, program by program (init, advance, evaluate), one after another:
    seconds tracing, lowering and compiling, the lowered program's size (StableHLO lines) and its copies of
    the physics reset and step; then the whole cold compile as the runner does it (`runner_s`: each
    program compiling on a thread while the next is traced)."""
    from pgjax.presets import preset_overrides
    from pgjax.programs import group_programs

    fields = {**(preset_overrides(preset, agent, env, steps) if preset else {}), **overrides, "total_steps": steps}
    (group,) = make_group(agent, env, None, list(range(seeds)), [fields], num_evals=DEFAULT_NUM_EVALS)
    jax.clear_caches()
    t0 = time.perf_counter()
    trainer, keys, configs, mesh = prepare(group)
    programs, traces = {}, {}
    with no_persistent_cache(), jax.default_matmul_precision(group.matmul_precision):
        t1 = time.perf_counter()
        jitted = group_programs(trainer, keys, configs, mesh)
        programs["run_shape_s"] = round(time.perf_counter() - t1, 2)
        for name, (fn, args) in jitted.items():
            t1 = time.perf_counter()
            traces[name] = fn.trace(*args)
            t2 = time.perf_counter()
            lowered = traces[name].lower()
            t3 = time.perf_counter()
            lowered.compile()
            t4 = time.perf_counter()
            programs[name] = {
                "trace_s": round(t2 - t1, 2),
                "lower_s": round(t3 - t2, 2),
                "compile_s": round(t4 - t3, 2),
                "stablehlo_lines": lowered.as_text().count("\n"),
                **physics_copies(traces[name].jaxpr.jaxpr),
            }
        sequential = time.perf_counter() - t0
        jax.clear_caches()
        overlapped = compile_group(trainer, keys, configs, mesh, group.matmul_precision).seconds
    return {
        "bench": "compile",
        "agent": agent,
        "env": env,
        "preset": preset,
        "seeds": seeds,
        "num_envs": group.configs[0].num_envs,
        "programs": programs,
        "total_s": round(sequential, 2),
        "compile_only_s": round(sum(programs[n]["compile_s"] for n in traces), 2),
        "runner_s": round(overlapped, 2),
        "device": f"{jax.devices()[0].device_kind}",
        "jax": jax.__version__,
    }


def _timed(fn, key) -> tuple[float, float]:
    """(compile s, run s) of a jitted fn(key) that returns an array."""
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(key).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(compiled(key))
    return t1 - t0, time.perf_counter() - t1


def _per_call_ms(fn, *args, calls: int = 200) -> float:
    """Milliseconds per call of a jitted fn, compiled and warmed up first, read after the last result is ready."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls * 1e3


def bench_critic_layer_norm(seeds: int, batch: int = 256, obs_size: int = 5, action_size: int = 1) -> list[dict]:
    """The twin critics' gradient (SAC's: 256-256 ReLU Q-networks on one batch) with and without the layer
    norm of Brax's critics, alone and under the runner's vmap over seeds, in milliseconds per call."""

    from pgjax.networks import QNetwork, apply_ensemble, init_ensemble

    k_obs, k_action, k_params = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.normal(k_obs, (seeds, batch, obs_size))
    action = jax.random.normal(k_action, (seeds, batch, action_size))
    rows = []
    for layer_norm in (False, True):
        q_net = QNetwork((256, 256), "relu", layer_norm)
        params = jax.vmap(lambda k: init_ensemble(q_net, k, 2, obs[0], action[0]))(jax.random.split(k_params, seeds))
        grad = jax.grad(lambda p, o, a: ((apply_ensemble(q_net, p, o, a) - 1.0) ** 2).mean())
        one = jax.tree.map(lambda x: x[0], params)
        rows.append(
            {
                "bench": "critic_layer_norm",
                "layer_norm": layer_norm,
                "batch": batch,
                "one_seed_ms": round(_per_call_ms(jax.jit(grad), one, obs[0], action[0]), 3),
                "one_seed_vmapped_ms": round(
                    _per_call_ms(jax.jit(jax.vmap(grad)), *jax.tree.map(lambda x: x[:1], (params, obs, action))), 3
                ),
                f"{seeds}_seeds_vmapped_ms": round(_per_call_ms(jax.jit(jax.vmap(grad)), params, obs, action), 3),
                "device": f"{jax.devices()[0].device_kind} x1",
            }
        )
    return rows


def compare_stepping(ours, bare, num_envs: int, steps: int, bare_name: str) -> dict:
    """Uniform random actions in `num_envs` envs for `steps` steps, timed apart from compilation, through our
    adapter `ours` (time limit, separate terminated/truncated, final_obs, a fresh random start per episode
    from the reset pool) and through `bare`, the same simulator in its own training wrappers (vmapped,
    episode time limit, auto-reset to one cached first state), on one device."""
    from pgjax.envs import batch_reset
    from pgjax.rollout import rollout, uniform_policy

    def run_ours(key):
        state = batch_reset(ours, key, num_envs)
        state, _ = rollout(ours, state, uniform_policy(ours.action_size), key, steps)
        return state.obs.sum()

    def run_bare(key):
        def body(state, k):
            action = jax.random.uniform(k, (num_envs, bare.action_size), minval=-1.0, maxval=1.0)
            return bare.step(state, action), None

        state, _ = jax.lax.scan(body, bare.reset(jax.random.split(key, num_envs)), jax.random.split(key, steps))
        return state.obs.sum()

    device = jax.local_devices()[0]
    with jax.default_device(device):
        key = jax.device_put(jax.random.PRNGKey(0), device)
        (c_bare, r_bare), (c_ours, r_ours) = _timed(run_bare, key), _timed(run_ours, key)
    total = num_envs * steps
    return {
        "env": ours.name,
        "backend": ours.backend,
        "num_envs": num_envs,
        "steps": steps,
        f"bare_{bare_name}_steps_per_s": round(total / r_bare),
        "pgjax_steps_per_s": round(total / r_ours),
        "pgjax_over_bare": round(r_bare / r_ours, 3),
        "compile_s": [round(c_bare, 2), round(c_ours, 2)],
        "device": f"{device.device_kind} x1",
        "jax": jax.__version__,
    }


def bench_brax_stepping(task: str = "hopper", num_envs: int = 64, steps: int = 1000) -> dict:
    """Our brax adapter against bare Brax in its EpisodeWrapper + AutoResetWrapper, same backend."""
    import warnings

    from pgjax.envs import make

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs as brax_envs
        from brax.envs.wrappers.training import wrap

        ours = make(f"brax/{task}")
        bare = wrap(brax_envs.get_environment(task, backend=ours.backend), episode_length=ours.max_episode_steps)
    return {"bench": "brax_stepping", **compare_stepping(ours, bare, num_envs, steps, "brax")}


def bench_dmc_stepping(task: str = "CheetahRun", num_envs: int = 64, episodes: int = 3) -> dict:
    """Our dmc adapter against Playground's environment in Playground's own training wrapper
    (`wrap_for_brax_training`, what Brax's trainers step), same physics implementation, over several
    whole episodes: we pay for a fresh random start per episode (a Playground reset per env, which for
    CheetahRun settles 200 physics steps) where Playground's wrapper restarts from one cached state, and
    a one-episode run would leave that cost out."""
    from mujoco_playground import wrapper

    from pgjax.envs import make
    from pgjax.envs.dmc_env import load_playground

    ours = make(f"dmc/{task}")
    env, config = load_playground(task, ours.backend)
    bare = wrapper.wrap_for_brax_training(env, episode_length=config.episode_length, action_repeat=config.action_repeat)
    steps = episodes * ours.max_episode_steps
    return {"bench": "dmc_stepping", **compare_stepping(ours, bare, num_envs, steps, "playground")}


def record_file(folder: Path) -> Path:
    """One JSON-lines file per kind of machine, e.g. results/bench/cpu-2core.jsonl, nvidia-h200-x1.jsonl."""
    device = device_info()
    if device["platform"] == "cpu":
        return folder / f"cpu-{len(os.sched_getaffinity(0))}core.jsonl"
    kind = re.sub(r"[^a-z0-9]+", "-", device["kind"].lower()).strip("-")
    return folder / f"{kind}-x{device['count']}.jsonl"


def provenance() -> dict:
    """What makes a figure comparable: when, on what, with which code and libraries."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": device_info(),
        "versions": versions(),
    }


def main(args) -> int:
    if args.critic_layer_norm:
        rows = bench_critic_layer_norm(args.seeds)
        for row in rows:
            print(json.dumps(row), flush=True)
        return record(rows, args)
    if args.scaling:
        rows = bench_scaling(args.seeds, args.ppo_steps)
        return record(rows, args)
    if args.compile:
        rows = []
        for agent, env, preset, overrides in COMPILE_CASES:
            if args.only in (None, agent, env.split("/")[0]):
                rows.append(compile_breakdown(agent, env, preset, overrides))
                print(json.dumps(rows[-1]), flush=True)
        return record(rows, args)
    rows = []
    with fresh_compile_cache():
        for agent, (overrides, budget) in BENCHES.items():
            if args.only in (None, agent):
                rows.append(bench_one(agent, overrides, args.seeds, getattr(args, budget)))
                print(json.dumps(rows[-1]), flush=True)
                for every in [None, 1] if args.checkpoint_overhead else []:
                    rows.append(bench_checkpoints(agent, overrides, args.seeds, getattr(args, budget), every))
                    print(json.dumps(rows[-1]), flush=True)
    for family, stepping in (("brax", bench_brax_stepping), ("dmc", bench_dmc_stepping)):
        if args.only in (None, family):
            rows.append(stepping())
            print(json.dumps(rows[-1]), flush=True)
    return record(rows, args)


def record(rows: list[dict], args) -> int:
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    if args.record != "off":
        path = record_file(Path(args.record))
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = provenance()
        append_durably(path, "".join(json.dumps({**row, **stamp}) + "\n" for row in rows))
        print(f"appended {len(rows)} row(s) to {path}")
    return 0
