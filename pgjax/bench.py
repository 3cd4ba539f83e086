"""`pgjax bench`: PPO and SAC on gymnax Pendulum with vmapped seeds; prints compile s, run s,
env steps/s, peak memory and final return. A benchmark, never a test."""
from __future__ import annotations

import json
import resource
from pathlib import Path

import jax

from pgjax.runner import make_group, run_group

# The configurations of the targets (2-core CPU: PPO 8 x 1M <= 65 s, SAC 8 x 40k <= 210 s).
PPO = {"num_envs": 64, "rollout_length": 64, "num_epochs": 10, "num_minibatches": 8, "hidden_sizes": "64,64"}
SAC = {"num_envs": 1, "gradient_steps": 1, "batch_size": 256, "hidden_sizes": "64,64", "warmup_steps": 1000}
# Evaluation points per run, chosen so that chunks divide the iterations and the whole budget runs:
# PPO 1M // 4096 = 244 iterations = 4 x 61 (999,424 steps, as many as purejaxrl's 1e6 // 4096 updates),
# SAC 40k - 1k warm-up = 39,000 iterations = 10 x 3,900.
NUM_EVALS = {"ppo": 4, "sac": 10}


def peak_memory_mb() -> float:
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS, KiB on Linux


def bench_one(agent: str, overrides: dict, seeds: int, steps: int) -> dict:
    (group,) = make_group(agent, "gymnax/Pendulum-v1", None, list(range(seeds)), [{**overrides, "total_steps": steps}],
                          num_evals=NUM_EVALS[agent], eval_episodes=8)
    result = run_group(group, progress=False)
    return {"agent": agent, "env": group.env, "seeds": seeds, "steps_per_seed": result.env_steps,
            "compile_s": round(result.compile_s, 2), "run_s": round(result.run_s, 2),
            "env_steps_per_s": round(result.steps_per_s), "peak_memory_mb": round(peak_memory_mb()),
            "final_return": round(float(result.final_returns.mean()), 1),
            "device": f"{jax.devices()[0].device_kind} x{result.devices}", "jax": jax.__version__}


def main(args) -> int:
    rows = []
    if args.only in (None, "ppo"):
        rows.append(bench_one("ppo", PPO, args.seeds, args.ppo_steps))
        print(json.dumps(rows[-1]), flush=True)
    if args.only in (None, "sac"):
        rows.append(bench_one("sac", SAC, args.seeds, args.sac_steps))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
