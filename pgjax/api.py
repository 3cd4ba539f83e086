"""The Python API: train an agent without the CLI, and load a trained policy from a results folder.

import pgjax
result = pgjax.train("ppo", "gymnax/Pendulum-v1", seeds=4, steps=200_000, lr=1e-3)
print(result.final_returns)                      # one per seed
act = pgjax.load("results/quick", run="ppo-3d5b9b0c", seed=0)
action = act(obs, key)                           # in the env's own units
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pgjax.config import ConfigError, build
from pgjax.contract import Agent
from pgjax.defaults import DEFAULT_EVAL_EPISODES, DEFAULT_NUM_EVALS
from pgjax.envs import make as make_env
from pgjax.registry import get_agent


@dataclasses.dataclass
class Trained:
    """What `train` returns: the tidy rows a results folder would hold, and the final run states."""

    agent: str
    env: str
    backend: str
    seeds: list[int]
    curves: list[dict]  # rows of curves.csv
    metrics: list[dict]  # rows of metrics.csv
    states: Any  # driver.RunState per seed (leading axis: seeds)
    out: Path | None
    config: Any = None  # the agent's config the runs trained with

    @property
    def final_returns(self) -> np.ndarray:
        last = max(r["env_steps"] for r in self.curves)
        return np.array(
            [
                r["eval_return_mean"]
                for s in self.seeds
                for r in self.curves
                if r["seed"] == s and r["env_steps"] == last
            ]
        )

    def policy(self, seed: int, best: bool = False) -> Callable:
        """The deterministic-by-default policy of one seed, in the env's own units."""
        index = self.seeds.index(seed)
        part = self.states.best_policy if best else Agent.policy_state(self.states.agent_state)
        env = make_env(self.env, self.backend)
        return policy_fn(self.agent, env, jax.tree.map(lambda x: x[index], part), self.config)


def train(
    agent: str,
    env: str,
    seeds: int | list[int] = 1,
    steps: int = 100_000,
    *,
    backend: str | None = None,
    num_evals: int = DEFAULT_NUM_EVALS,
    eval_episodes: int = DEFAULT_EVAL_EPISODES,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **config,
) -> Trained:
    """Train `agent` on `env` for `steps` env steps per seed, all seeds vmapped in one compiled program;
    `config` sets the agent's Config fields. Without `out` nothing is written; with it, the results folder is kept there (curves,
    metrics, runs.json, policies) as `pgjax run` writes it, without the report (`pgjax report`
    writes it); an `out` that holds results is refused unless `overwrite`. Runs are split over JAX's
    devices as this program has them: on a CPU, one device unless you asked JAX for more before it
    started (`jax.config.update("jax_num_cpu_devices", n)`; the command line takes one per core)."""
    from pgjax.groups import make_group
    from pgjax.memory import check_group_fits
    from pgjax.runner import run_group
    from pgjax.sweep import WriteOptions, run_groups

    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    (group,) = make_group(agent, env, backend, seed_list, [{**config, "total_steps": steps}], num_evals, eval_episodes)
    if out is None:  # nothing written: no folder, no lock, no rows on disk, no saved policy
        check_group_fits(group)
        result = run_group(group, progress)
    else:
        finished = []
        options = WriteOptions(mode="overwrite" if overwrite else "new", progress=progress)
        run_groups(f"{agent}-{env.split('/')[-1]}", [group], Path(out), options, on_finish=finished.append)
        (result,) = finished
    states = jax.tree.map(lambda x: x[0], result.run)  # one config: keep the seeds axis
    return Trained(
        agent=agent,
        env=group.env,
        backend=group.backend,
        seeds=seed_list,
        curves=result.rows,
        metrics=result.metric_rows,
        states=states,
        out=Path(out) if out is not None else None,
        config=group.configs[0],
    )


def policy_fn(agent_name: str, env, policy_state, config) -> Callable:
    agent = get_agent(agent_name)

    def policy(obs: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
        return env.to_env_units(agent.act(policy_state, obs, key, config, deterministic=deterministic))

    return policy


def load(results_dir: str | Path, run: str | None = None, seed: int | None = None, best: bool = False) -> Callable:
    """The policy `policy(obs, key, deterministic=True)` of one run of a results folder (its final
    parameters, or the best-evaluated ones), actions in the env's own units. `run` is a config id from
    curves.csv (optional when the folder holds one config); `seed` defaults to the run's first seed."""
    from pgjax.checkpoint import restore_policies

    results_dir = Path(results_dir)
    runs_path = results_dir / "runs.json"
    if not runs_path.is_file():
        raise ConfigError(f"{results_dir} has no runs.json (not a results folder)")
    runs = json.loads(runs_path.read_text())
    groups = [g for g in runs["groups"] if "id" in g and (results_dir / "policies" / g["id"]).is_dir()]
    ids = [cid for g in groups for cid in g["config_ids"]]
    if run is None:
        if len(ids) != 1:
            raise ConfigError(
                f"{results_dir} holds {len(ids)} runs with saved policies; choose one with run=... from {ids}"
            )
        run = ids[0]
    found = [g for g in groups if run in g["config_ids"]]
    if not found:
        raise ConfigError(f"no saved policy for run {run!r} in {results_dir} (runs with policies: {ids})")
    group = found[0]
    seed = group["seeds"][0] if seed is None else seed
    if seed not in group["seeds"]:
        raise ConfigError(f"run {run!r} has seeds {group['seeds']}, not {seed}")
    plan = next(p for p in runs["plan"] if run in p["config_ids"])
    agent = get_agent(group["agent"])
    config = build(agent.Config, plan["configs"][plan["config_ids"].index(run)], group["agent"])
    env = make_env(group["env"], group["backend"])
    one = jax.eval_shape(lambda k: Agent.policy_state(agent.init(k, env, config)), jax.random.PRNGKey(0))
    batch = (len(group["config_ids"]), len(group["seeds"]))
    shape = jax.tree.map(lambda x: jax.ShapeDtypeStruct(batch + x.shape, x.dtype), one)
    saved = restore_policies(results_dir / "policies" / group["id"], shape)["best" if best else "final"]
    index = (group["config_ids"].index(run), group["seeds"].index(seed))
    return policy_fn(group["agent"], env, jax.tree.map(lambda x: jax.numpy.asarray(x[index]), saved), config)
