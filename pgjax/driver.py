"""The generic driver: any agent module becomes `train(key, config) -> (state, curve)`.

An agent module provides `Config`, `init(key, env, config)`, `iteration(state, env, config)`,
`act(state, obs, key, deterministic)`, `steps_per_iteration(config)` and `warmup_steps(config)`;
its State carries the training envs as `env_state`. The driver scans iterations between evaluation
points (one jitted *chunk* per point), evaluates the deterministic policy on separate envs with
separate keys, flags divergence, and vmaps all of it over seeds and over float hyperparameters.
"""
from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pgjax.envs import Env, batch_reset, batch_step
from pgjax.rollout import mean_train_return

DEFAULT_NUM_EVALS = 20
DEFAULT_EVAL_EPISODES = 8


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Static bookkeeping: how many env steps each chunk consumes, so budgets are exact."""

    warmup_steps: int
    steps_per_iteration: int
    iterations_per_chunk: int
    num_chunks: int

    @property
    def steps_per_chunk(self) -> int:
        return self.steps_per_iteration * self.iterations_per_chunk

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.num_chunks * self.steps_per_chunk

    def eval_steps(self) -> np.ndarray:
        """Env steps consumed at each evaluation point (point 0 is right after init)."""
        return self.warmup_steps + self.steps_per_chunk * np.arange(self.num_chunks + 1)


def num_iterations(agent: ModuleType, config) -> int:
    return max(0, (config.total_steps - agent.warmup_steps(config)) // agent.steps_per_iteration(config))


def make_schedule(agent: ModuleType, config, num_evals: int = DEFAULT_NUM_EVALS) -> Schedule:
    iterations = max(1, num_iterations(agent, config))
    # Chunks are one compiled program, so all have the same length; of the two lengths closest to
    # iterations / num_evals, take the one that leaves fewer of the budget's iterations unrun.
    lengths = {max(1, iterations // num_evals), max(1, -(-iterations // num_evals))}
    per_chunk = max(lengths, key=lambda n: (iterations // n) * n)
    return Schedule(agent.warmup_steps(config), agent.steps_per_iteration(config),
                    per_chunk, iterations // per_chunk)


@struct.dataclass
class RunState:
    agent: Any
    eval_key: jax.Array
    evals_done: jax.Array
    diverged: jax.Array


@struct.dataclass
class CurvePoint:
    eval_return_mean: jax.Array
    eval_return_std: jax.Array
    train_return_mean: jax.Array
    diverged: jax.Array


def evaluate(agent: ModuleType, env: Env, agent_state, key: jax.Array, num_episodes: int):
    """Return of the deterministic policy on `num_episodes` fresh episodes (first episode of each env)."""
    reset_key, run_key = jax.random.split(key)
    env_state = batch_reset(env, reset_key, num_episodes)

    def body(carry, k):
        state, total, alive = carry
        act_key, step_key = jax.random.split(k)
        action = agent.act(agent_state, state.obs, act_key, True)
        state = batch_step(env, state, action, step_key)
        total = total + jnp.where(alive, state.reward, 0.0)
        return (state, total, alive & ~state.done), None

    init = (env_state, jnp.zeros(num_episodes), jnp.ones(num_episodes, bool))
    (_, returns, _), _ = jax.lax.scan(body, init, jax.random.split(run_key, env.max_episode_steps))
    return returns.mean(), returns.std()


def all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The pure pieces of one run (`init`, `advance`, `evaluate`) and the whole `train`, for one seed
    and config. The runner compiles the pieces apart, so evaluation is traced and compiled once."""

    agent: ModuleType
    env: Env
    schedule: Schedule
    eval_episodes: int = DEFAULT_EVAL_EPISODES

    def init(self, key: jax.Array, config) -> RunState:
        agent_key, eval_key = jax.random.split(key)
        state = self.agent.init(agent_key, self.env, config)
        return RunState(state, eval_key, jnp.zeros((), jnp.int32), ~all_finite(state))

    def evaluate(self, run: RunState) -> tuple[RunState, CurvePoint]:
        key = jax.random.fold_in(run.eval_key, run.evals_done)
        mean, std = evaluate(self.agent, self.env, run.agent, key, self.eval_episodes)
        point = CurvePoint(mean, std, mean_train_return(run.agent.env_state), run.diverged)
        return run.replace(evals_done=run.evals_done + 1), point

    def advance(self, run: RunState, config) -> RunState:
        """The iterations between two evaluation points; flags the run once anything is not finite."""
        def body(state, _):
            return self.agent.iteration(state, self.env, config)

        state, metrics = jax.lax.scan(body, run.agent, None, self.schedule.iterations_per_chunk)
        return run.replace(agent=state, diverged=run.diverged | ~all_finite(state) | ~all_finite(metrics))

    def chunk(self, run: RunState, config) -> tuple[RunState, CurvePoint]:
        return self.evaluate(self.advance(run, config))

    def train(self, key: jax.Array, config) -> tuple[RunState, CurvePoint]:
        """One whole run: the curve has num_chunks + 1 points (the first right after init)."""
        run, first = self.evaluate(self.init(key, config))
        run, points = jax.lax.scan(lambda r, _: self.chunk(r, config), run, None, self.schedule.num_chunks)
        curve = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, points)
        return run, curve


def over_seeds_and_configs(fn, x_per_config: bool):
    """vmap fn(x, config) over seeds (x's leading axis) and over a leading config axis of the config's
    float leaves; x is shared by all configs (seed keys) unless x_per_config (run states)."""
    per_seed = jax.vmap(fn, in_axes=(0, None))
    return jax.vmap(per_seed, in_axes=(0 if x_per_config else None, 0))


def stack_configs(configs: list):
    """One config whose float leaves carry a leading axis; static fields must agree."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs)


def seed_keys(seeds) -> jax.Array:
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
