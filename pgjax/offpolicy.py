"""The off-policy loop shared by SAC, DSAC-T, MDPO-off and PMOE-SAC.

Each iteration steps `num_envs` training envs once with the agent's exploration policy and stores the
transitions in the replay buffer (the next observation is the true pre-reset one, and only true
terminations stop a bootstrap; SAC's `mask_truncated` instead drops time-limit transitions from its
critic loss, as Brax does, and only then is the truncation flag stored), then takes `gradient_steps`
updates, each on a uniform minibatch whose observations are normalised with the running statistics.
The first `warmup_steps` env steps fill the buffer with uniform random actions, or with the initial
policy where `random_warmup` is off. An agent supplies its learner (networks, parameters, optimiser
states, ...), its exploration policy and its gradient step; everything else lives here, once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from flax import struct

from pgjax.config import check_positive, check_unit_interval, hyper, require, static
from pgjax.contract import Agent
from pgjax.envs import Env, EnvState, batch_reset, refresh
from pgjax.normalize import RunningStats, normalizer
from pgjax.replay import (
    as_items,
    buffer_capacity,
    make_buffer,
    replay_budget_problems,
    transition_item,
)
from pgjax.rollout import env_step, rollout, uniform_policy

# (learner, normalised obs, key, config) -> action in [-1, 1]
Explore = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]
# (learner, normalised batch, key, env, config) -> (learner, metrics)
GradientStep = Callable[[Any, dict, jax.Array, Env, Any], tuple[Any, dict]]


@struct.dataclass
class Config:
    """The fields every off-policy agent shares; an agent's Config extends it (and may change defaults)."""

    total_steps: int = static(100_000, "env steps per run (set with --steps or a sweep's steps)")
    num_envs: int = static(1, "parallel training envs")
    gradient_steps: int = static(1, "per iteration, i.e. per num_envs env steps")
    batch_size: int = static(256, "replay samples per gradient step")
    buffer_size: int = static(1_000_000, "replay capacity (transitions)")
    warmup_steps: int = static(5_000, "env steps collected before the first gradient step")
    random_warmup: bool = static(True, "warm-up actions uniform in [-1, 1]; False: from the initial policy")
    normalize_observations: bool = static(False, "normalise observations with running statistics")
    gamma: float = hyper(0.99, "discount factor")
    tau: float = hyper(0.005, "Polyak coefficient of the target networks")
    reward_scale: float = hyper(1.0, "multiply rewards by this before learning")

    def problems(self) -> list[str]:
        out: list[str] = []
        check_positive(
            out, self, "total_steps", "num_envs", "gradient_steps", "batch_size", "buffer_size", "reward_scale"
        )
        check_unit_interval(out, self, "gamma", "tau")
        require(out, self.warmup_steps >= 0, f"warmup_steps must be >= 0 (got {self.warmup_steps})")
        return out + replay_budget_problems(self)

    def stores_truncation(self) -> bool:
        """Whether the replay stores each transition's time-limit flag: only a loss that masks truncated
        transitions (SAC's `mask_truncated`, Brax's choice) reads it, so no other agent pays its memory."""
        return False


@struct.dataclass
class State:
    learner: Any  # the agent's own part: parameters, targets, optimiser states, temperatures, ...
    buffer: Any
    obs_stats: RunningStats
    env_state: EnvState
    key: jax.Array
    normalize_observations: bool = static(False)


def steps_per_iteration(config: Config) -> int:
    return config.num_envs


def warmup_steps(config: Config) -> int:
    return config.warmup_steps


def replay_buffer(config: Config):
    return make_buffer(buffer_capacity(config), config.batch_size)


def init(
    key: jax.Array, env: Env, config: Config, init_learner: Callable[[jax.Array, Env, Any], Any], explore: Explore
) -> State:
    """The learner, a replay buffer holding `warmup_steps` transitions (uniform random actions, or the
    initial policy's), and the training envs."""
    k_learner, k_env, k_warm, key = jax.random.split(key, 4)
    learner = init_learner(k_learner, env, config)
    buffer = replay_buffer(config)
    buffer_state = buffer.init(transition_item(env.obs_size, env.action_size, config.stores_truncation()))
    env_state = batch_reset(env, k_env, config.num_envs)
    obs_stats = RunningStats.create((env.obs_size,))
    if config.warmup_steps:
        # a reset's fresh-start pools hold copies of its first states until refilled, and the warm-up's
        # episodes end before the driver's first refill
        env_state = refresh(env, env_state)

        def initial_policy(obs, k):
            return explore(learner, obs_stats.normalize(obs) if config.normalize_observations else obs, k, config), ()

        warmup = uniform_policy(env.action_size) if config.random_warmup else initial_policy
        env_state, traj = rollout(env, env_state, warmup, k_warm, config.warmup_steps // config.num_envs)
        buffer_state = buffer.add(buffer_state, as_items(traj, config.stores_truncation()))
        obs_stats = obs_stats.update(traj.obs)
    return State(
        learner=learner,
        buffer=buffer_state,
        obs_stats=obs_stats,
        env_state=env_state,
        key=key,
        normalize_observations=config.normalize_observations,
    )


def iteration(
    state: State, env: Env, config: Config, explore: Explore, gradient_step: GradientStep
) -> tuple[State, dict]:
    """One env step in every training env, then `gradient_steps` updates (their batches normalised with
    the statistics the policy acted on); metrics are the updates' means."""
    normalize = normalizer(state)
    key, act_key, update_key = jax.random.split(state.key, 3)

    def policy(obs, k):
        return explore(state.learner, normalize(obs), k, config), ()

    env_state, transition = env_step(env, state.env_state, policy, act_key)
    buffer = replay_buffer(config)
    buffer_state = buffer.add(state.buffer, as_items(transition, config.stores_truncation()))
    obs_stats = state.obs_stats.update(transition.obs) if config.normalize_observations else state.obs_stats

    def update(learner, k):
        sample_key, step_key = jax.random.split(k)
        batch = buffer.sample(buffer_state, sample_key).experience
        batch = {**batch, "obs": normalize(batch["obs"]), "next_obs": normalize(batch["next_obs"])}
        return gradient_step(learner, batch, step_key, env, config)

    learner, metrics = jax.lax.scan(update, state.learner, jax.random.split(update_key, config.gradient_steps))
    new_state = state.replace(learner=learner, buffer=buffer_state, obs_stats=obs_stats, env_state=env_state, key=key)
    return new_state, jax.tree.map(lambda m: m.mean(0), metrics)  # over the updates (a metric may be a vector)


def agent(
    *,
    Config: type,
    init_learner: Callable[[jax.Array, Env, Any], Any],
    explore: Explore,
    gradient_step: GradientStep,
    act: Callable,
) -> Agent:
    """An off-policy agent (see `pgjax.contract`) from its config class, its learner's initialiser, its
    exploration policy, its gradient step and its `act`."""
    return Agent(
        Config=Config,
        init=functools.partial(init, init_learner=init_learner, explore=explore),
        iteration=functools.partial(iteration, explore=explore, gradient_step=gradient_step),
        act=act,
        steps_per_iteration=steps_per_iteration,
        warmup_steps=warmup_steps,
    )
