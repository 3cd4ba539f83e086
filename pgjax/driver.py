"""The generic driver: any agent module becomes `train(key, config) -> (state, curve)`.

An agent is the record `pgjax.contract.Agent`: `Config`, `init(key, env, config)`, `iteration(state, env,
config)`, `act(policy state, obs, key, config, deterministic=...)`, `steps_per_iteration(config)` and
`warmup_steps(config)`; its state carries the training envs as `env_state`. The driver scans iterations between evaluation
points (one jitted *chunk* per point), evaluates the deterministic policy on separate envs with
separate keys, flags divergence, and vmaps all of it over seeds and over float hyperparameters.
"""

from __future__ import annotations

import dataclasses
import functools
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pgjax.budget import iterations_in_budget
from pgjax.config import ConfigError
from pgjax.contract import Agent
from pgjax.defaults import DEFAULT_EVAL_EPISODES, DEFAULT_NUM_EVALS
from pgjax.envs import Env, batch_reset, batch_step, refresh
from pgjax.rollout import mean_train_return


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The one schedule a run follows: warm-up, then `num_iterations` iterations of a statically known
    size, split into `num_chunks` chunks with an evaluation after each. Every horizon (learning-rate
    annealing, budgets, evaluation points) comes from here, so none can disagree with what runs."""

    warmup_steps: int
    steps_per_iteration: int
    num_iterations: int
    num_chunks: int

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.num_iterations * self.steps_per_iteration

    def iterations_before(self, chunk):
        """Iterations done before chunk `chunk` (0..num_chunks): chunks differ by at most one iteration.
        Written as j·q + (j·r) // k so that j·I never overflows int32 inside a traced program."""
        q, r = divmod(self.num_iterations, self.num_chunks)
        return chunk * q + (chunk * r) // self.num_chunks

    def chunk_iterations(self, chunk):
        return self.iterations_before(chunk + 1) - self.iterations_before(chunk)

    def eval_steps(self) -> np.ndarray:
        """Env steps consumed at each evaluation point (point 0 is right after init)."""
        return self.warmup_steps + self.steps_per_iteration * self.iterations_before(np.arange(self.num_chunks + 1))

    def note(self, num_evals: int, asked_steps: int | None = None) -> str | None:
        """What runs instead of what was asked, in one line (None when it is what was asked)."""
        notes = []
        if asked_steps is not None and self.total_steps != asked_steps:
            notes.append(
                f"{asked_steps:,} steps is not a whole number of iterations ({self.steps_per_iteration:,} "
                f"env steps each{f' after {self.warmup_steps:,} of warm-up' if self.warmup_steps else ''}); "
                f"running {self.total_steps:,}"
            )
        if self.num_chunks != num_evals:
            notes.append(
                f"num_evals = {num_evals} exceeds the {self.num_iterations} iteration(s) the budget holds; "
                f"writing {self.num_chunks + 1} evaluation points (one after every iteration)"
            )
        return "; ".join(notes) or None


def make_schedule(agent: Agent, config, num_evals: int = DEFAULT_NUM_EVALS) -> Schedule:
    """The schedule of `config.total_steps` (never exceeded); ConfigError when no iteration fits."""
    warmup, per_iteration = agent.warmup_steps(config), agent.steps_per_iteration(config)
    iterations = iterations_in_budget(config.total_steps, warmup, per_iteration)
    if iterations < 1:
        raise ConfigError(
            f"total_steps = {config.total_steps} leaves no training iteration after warmup_steps = {warmup} "
            f"(one iteration takes {per_iteration} env steps): raise total_steps"
            + (" or lower warmup_steps" if warmup else "")
        )
    return Schedule(warmup, per_iteration, iterations, min(num_evals, iterations))


@struct.dataclass
class RunState:
    agent_state: Any  # the agent's own state (learner, env states, normaliser, replay, ...)
    eval_key: jax.Array
    evals_done: jax.Array
    diverged: jax.Array
    metrics: Any  # the agent's training metrics averaged over the last chunk (NaN before any training)
    best_return: jax.Array  # the best evaluation return so far
    best_policy: Any  # the policy state (Agent.policy_state) of the agent state that scored it


@struct.dataclass
class CurvePoint:
    eval_return_mean: jax.Array
    eval_return_std: jax.Array
    train_return_mean: jax.Array
    diverged: jax.Array
    metrics: Any


def episode_returns(env: Env, act, key: jax.Array, num_episodes: int) -> jax.Array:
    """Undiscounted return of `act(obs, key)` on `num_episodes` fresh episodes (the first of each env)."""
    reset_key, run_key = jax.random.split(key)
    env_state = batch_reset(env, reset_key, num_episodes)

    def body(carry, k):
        state, total, alive = carry
        act_key, step_key = jax.random.split(k)
        state = batch_step(env, state, act(state.obs, act_key), step_key)
        total = total + jnp.where(alive, state.reward, 0.0)
        return (state, total, alive & ~state.done), None

    init = (env_state, jnp.zeros(num_episodes), jnp.ones(num_episodes, bool))
    (_, returns, _), _ = jax.lax.scan(body, init, jax.random.split(run_key, env.max_episode_steps))
    return returns


def evaluate(agent: Agent, env: Env, policy_state, config, key: jax.Array, num_episodes: int):
    """Mean and std of the deterministic policy's return on `num_episodes` fresh episodes."""

    def act(obs, k):
        return agent.act(policy_state, obs, k, config, deterministic=True)

    returns = episode_returns(env, act, key, num_episodes)
    return returns.mean(), returns.std()


def uniform_random_returns(env: Env, key: jax.Array, num_episodes: int) -> jax.Array:
    """Returns of uniform random actions in [-1, 1]: a task's score 0 in the aggregate statistics."""

    def act(obs, k):
        return jax.random.uniform(k, (obs.shape[0], env.action_size), minval=-1.0, maxval=1.0)

    return episode_returns(env, act, key, num_episodes)


def all_finite(tree) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The pure pieces of one run (`init`, `advance`, `evaluate`) and the whole `train`, for one seed
    and config. The runner compiles the pieces apart, so evaluation is traced and compiled once."""

    agent: Agent
    env: Env
    schedule: Schedule
    eval_episodes: int = DEFAULT_EVAL_EPISODES

    @functools.cached_property
    def iteration(self):
        """The agent's iteration, jitted so that JAX traces it once for init (its metrics' shapes) and
        advance together; inside their programs it is inlined."""
        return jax.jit(lambda state, config: self.agent.iteration(state, self.env, config))

    def init(self, key: jax.Array, config) -> RunState:
        agent_key, eval_key = jax.random.split(key)
        state = self.agent.init(agent_key, self.env, config)
        shapes = jax.eval_shape(lambda s: self.iteration(s, config)[1], state)
        no_metrics = jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), shapes)
        return RunState(
            agent_state=state,
            eval_key=eval_key,
            evals_done=jnp.zeros((), jnp.int32),
            diverged=~all_finite(state),
            metrics=no_metrics,
            best_return=jnp.asarray(-jnp.inf, jnp.float32),
            best_policy=Agent.policy_state(state),
        )

    def evaluate(self, run: RunState, config) -> tuple[RunState, CurvePoint]:
        key = jax.random.fold_in(run.eval_key, run.evals_done)
        policy = Agent.policy_state(run.agent_state)
        mean, std = evaluate(self.agent, self.env, policy, config, key, self.eval_episodes)
        point = CurvePoint(
            eval_return_mean=mean,
            eval_return_std=std,
            train_return_mean=mean_train_return(run.agent_state.env_state),
            diverged=run.diverged,
            metrics=run.metrics,
        )
        better = (mean > run.best_return) & ~run.diverged  # False for a NaN mean: best_return stays a number
        best = jax.tree.map(lambda new, old: jnp.where(better, new, old), policy, run.best_policy)
        return run.replace(
            evals_done=run.evals_done + 1, best_return=jnp.where(better, mean, run.best_return), best_policy=best
        ), point

    def advance(self, run: RunState, config, iterations) -> RunState:
        """`iterations` training iterations (a traced scalar shared by all runs, so chunks of different
        lengths are one program); keeps their metrics' mean and flags the run once anything is not finite."""
        refill_every = self.iterations_per_refill(run.agent_state.env_state)

        def body(i, carry):
            state, finite, total = carry
            if refill_every:  # the predicate is the same for every run, so this stays a real branch
                state = state.replace(
                    env_state=jax.lax.cond(
                        i % refill_every == 0, partial(refresh, self.env), lambda s: s, state.env_state
                    )
                )
            state, metrics = self.iteration(state, config)
            return state, finite & all_finite(metrics), jax.tree.map(jnp.add, total, metrics)

        zeros = jax.tree.map(jnp.zeros_like, run.metrics)
        state, finite, total = jax.lax.fori_loop(0, iterations, body, (run.agent_state, jnp.asarray(True), zeros))
        metrics = jax.tree.map(lambda t: t / iterations, total)
        return run.replace(agent_state=state, diverged=run.diverged | ~finite | ~all_finite(state), metrics=metrics)

    def iterations_per_refill(self, env_state) -> int:
        """Iterations between refills of the envs' fresh-reset pools (0: none from the driver: the env keeps
        no pool, or each iteration is one rollout longer than the refill period, which refills them itself)."""
        if not self.env.refresh_every:
            return 0
        steps_per_env = max(1, self.schedule.steps_per_iteration // env_state.obs.shape[0])
        if steps_per_env > self.env.refresh_every:
            return 0  # a rollout that long refills the pools itself, at its start and every period
        return max(1, self.env.refresh_every // steps_per_env)  # at least as often as the env asks

    def chunk(self, run: RunState, config, iterations) -> tuple[RunState, CurvePoint]:
        return self.evaluate(self.advance(run, config, iterations), config)

    def train(self, key: jax.Array, config) -> tuple[RunState, CurvePoint]:
        """One whole run: the curve has num_chunks + 1 points (the first right after init)."""
        run, first = self.evaluate(self.init(key, config), config)
        chunks = jnp.arange(self.schedule.num_chunks)
        run, points = jax.lax.scan(lambda r, j: self.chunk(r, config, self.schedule.chunk_iterations(j)), run, chunks)
        curve = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, points)
        return run, curve


def over_seeds_and_configs(fn, x_per_config: bool):
    """vmap fn(x, config, *shared) over seeds (x's leading axis) and over a leading config axis of the
    config's float leaves; x is shared by all configs (seed keys) unless x_per_config (run states),
    and the remaining arguments are shared by every run."""

    def batched(x, config, *shared):
        rest = (None,) * len(shared)
        per_seed = jax.vmap(fn, in_axes=(0, None) + rest)
        return jax.vmap(per_seed, in_axes=(0 if x_per_config else None, 0) + rest)(x, config, *shared)

    return batched


def stack_configs(configs: list):
    """One config whose float leaves carry a leading axis; static fields must agree."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs)


def seed_keys(seeds) -> jax.Array:
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
