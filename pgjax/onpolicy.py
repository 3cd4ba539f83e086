"""The on-policy loop shared by PPO, MDPO-on, PMOE-PPO and PG-Rainbow (N-HARPG takes its config, state and
statistics updates, and runs its own iteration).

Each iteration runs the current policy for `rollout_length` steps in `num_envs` envs, normalises the
observations with the running statistics the policy acted on, scales the rewards by the running std
of the discounted return, computes values and GAE advantages (bootstrapping through truncations from
the pre-reset observation, never through terminations), and hands the flattened batch to the agent's
update; the pieces an update is made of (minibatch epochs, one optimiser step, advantage
normalisation, the clipped value loss, the annealed learning rate) live here too, once. An agent
supplies its learner (networks, parameters, optimiser states, ...), how it samples an action, its
value function and its update.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax.budget import iterations_in_budget
from pgjax.config import check_choice, check_positive, check_unit_interval, hyper, require, static
from pgjax.contract import Agent
from pgjax.envs import Env, EnvState, batch_reset
from pgjax.minibatch import shuffled_minibatches
from pgjax.networks import optimizer_step
from pgjax.normalize import RewardScaler, RunningStats, normalizer
from pgjax.returns import ADVANTAGES, gae
from pgjax.rollout import rollout

# (learner, normalised obs, key, config) -> (raw action, extras stored with it, e.g. {"log_prob": ...})
Sample = Callable[[Any, jax.Array, jax.Array, Any], tuple[jax.Array, dict]]
# (learner, normalised obs, config) -> V(obs), or a dict of V(obs) under "value" and extras kept with each
# sample in the batch (what the value was computed from, so that the update need not compute it again)
Value = Callable[[Any, jax.Array, Any], jax.Array | dict]
# (learner, flat batch, key, env, config) -> (learner, metrics)
Update = Callable[[Any, dict, jax.Array, Env, Any], tuple[Any, dict]]


@struct.dataclass
class RolloutConfig:
    """The fields of the rollouts themselves, which every on-policy agent shares (N-HARPG, which has no
    epochs, minibatches or GAE, extends this one; the others extend `Config`)."""

    total_steps: int = static(1_000_000, "env steps per run (set with --steps or a sweep's steps)")
    num_envs: int = static(64, "parallel training envs")
    rollout_length: int = static(64, "steps of every env per on-policy iteration")
    normalize_observations: bool = static(True, "normalise observations with running statistics")
    scale_rewards: bool = static(True, "scale rewards by the running std of the discounted return")
    gamma: float = hyper(0.99, "discount factor")

    def problems(self) -> list[str]:
        out: list[str] = []
        check_positive(out, self, "total_steps", "num_envs", "rollout_length")
        check_unit_interval(out, self, "gamma")
        return out


@struct.dataclass
class Config(RolloutConfig):
    """The fields of the loop's advantages and minibatch epochs; an agent's Config extends it (and may change
    defaults)."""

    num_epochs: int = static(10, "passes over each rollout batch")
    num_minibatches: int = static(8, "minibatches per epoch")
    mask_truncated: bool = static(
        False, "a step ending at a time limit: no advantage, no value error (Brax's)", added=True
    )
    gae_segment: int = static(
        0, "GAE restarts from V every this many steps (Brax: unroll_length); 0: never", added=True
    )
    advantage: str = static("gae", "gae, or lambda_target: r + γ v^λ(s') − V(s) (Brax's PPO)", added=True)
    gae_lambda: float = hyper(0.95, "GAE lambda")
    reward_scale: float = hyper(
        1.0, "a constant factor on the rewards, after scale_rewards' (Brax: reward_scaling)", added=True
    )

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "num_epochs", "num_minibatches", "reward_scale")
        check_unit_interval(out, self, "gae_lambda")
        check_choice(out, self, "advantage", ADVANTAGES)
        require(out, self.gae_segment >= 0, f"gae_segment must be >= 0 (got {self.gae_segment})")
        batch = self.num_envs * self.rollout_length
        require(
            out,
            self.num_minibatches <= 0 or batch % self.num_minibatches == 0,
            f"num_envs * rollout_length = {batch} must be divisible by num_minibatches = {self.num_minibatches}",
        )
        return out


@struct.dataclass
class State:
    learner: Any  # the agent's own part: parameters, optimiser states, counters, ...
    obs_stats: RunningStats
    reward_scaler: RewardScaler
    env_state: EnvState
    key: jax.Array
    normalize_observations: bool = static(True)


def steps_per_iteration(config: Config) -> int:
    return config.num_envs * config.rollout_length


def warmup_steps(config: Config) -> int:
    return 0


def num_iterations(config: Config) -> int:
    """The iterations the run's budget holds (the driver's schedule runs exactly these)."""
    return iterations_in_budget(config.total_steps, warmup_steps(config), steps_per_iteration(config))


def annealed_lr(lr, config: Config, updates_per_iteration: int):
    """lr at the first optimiser step, falling linearly to 0 at the last one the budget runs."""
    last_update = max(1, num_iterations(config) * updates_per_iteration - 1)
    return lambda count: lr * jnp.maximum(1.0 - count / last_update, 0.0)


def init(
    key: jax.Array,
    env: Env,
    config: RolloutConfig,
    init_learner: Callable[[jax.Array, Env, Any], Any],
    num_envs: int | None = None,
) -> State:
    """The loop's state with `num_envs` training envs (default: config.num_envs, whose returns the reward
    scaler tracks)."""
    k_learner, k_env, key = jax.random.split(key, 3)
    return State(
        learner=init_learner(k_learner, env, config),
        obs_stats=RunningStats.create((env.obs_size,)),
        reward_scaler=RewardScaler.create(config.num_envs),
        env_state=batch_reset(env, k_env, num_envs or config.num_envs),
        key=key,
        normalize_observations=config.normalize_observations,
    )


def iteration(
    state: State, env: Env, config: Config, sample: Sample, value: Value, update: Update
) -> tuple[State, dict]:
    """Rollout, advantages, then the agent's update on the flat batch of num_envs * rollout_length
    samples: obs (normalised), action, the sample's and the value's extras, value, advantage (not yet normalised),
    target (the λ-return Â + V), and for agents that also learn off-policy from the transitions
    (PG-Rainbow's replay), reward (scaled as GAE saw it), next_obs (normalised, pre-reset) and
    terminated."""
    normalize = normalizer(state)
    key, rollout_key, update_key = jax.random.split(state.key, 3)

    def policy(obs, k):
        return sample(state.learner, normalize(obs), k, config)

    env_state, traj = rollout(env, state.env_state, policy, rollout_key, config.rollout_length)

    obs, next_obs = normalize(traj.obs), normalize(traj.next_obs)
    values, value_extras = values_and_extras(value(state.learner, obs, config))
    next_values, _ = values_and_extras(value(state.learner, next_obs, config))
    reward_scaler = updated_reward_scaler(state.reward_scaler, traj, config)
    rewards = reward_scaler.scale(traj.reward) if config.scale_rewards else traj.reward
    rewards = config.reward_scale * rewards
    advantages, targets = gae(
        rewards,
        values,
        next_values,
        traj.terminated,
        traj.done,
        config.gamma,
        config.gae_lambda,
        segment=config.gae_segment,
        mask_truncated=config.mask_truncated,
        advantage=config.advantage,
    )

    batch = {
        "obs": obs,
        "action": traj.action,
        **traj.extras,
        **value_extras,
        "value": values,
        "advantage": advantages,
        "target": targets,
        "reward": rewards,
        "next_obs": next_obs,
        "terminated": traj.terminated.astype(jnp.float32),
    }
    batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
    learner, metrics = update(state.learner, batch, update_key, env, config)

    return state.replace(
        learner=learner,
        obs_stats=updated_obs_stats(state.obs_stats, traj, config),
        reward_scaler=reward_scaler,
        env_state=env_state,
        key=key,
    ), metrics


def updated_obs_stats(obs_stats: RunningStats, traj, config: RolloutConfig) -> RunningStats:
    """The observation normaliser after it has seen the rollout's (raw) observations, where it is on."""
    return obs_stats.update(traj.obs) if config.normalize_observations else obs_stats


def updated_reward_scaler(reward_scaler: RewardScaler, traj, config: RolloutConfig) -> RewardScaler:
    """The reward scaler after the rollout's discounted returns, where rewards are scaled."""
    return reward_scaler.update(traj.reward, traj.done, config.gamma) if config.scale_rewards else reward_scaler


def values_and_extras(out: jax.Array | dict) -> tuple[jax.Array, dict]:
    if isinstance(out, dict):
        return out["value"], {k: v for k, v in out.items() if k != "value"}
    return out, {}


def descent_step(loss_fn: Callable, optimizer: optax.GradientTransformation):
    """(params, opt_state), batch -> one optimiser step on loss_fn(params, batch) -> (loss, info)."""
    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(carry, batch):
        params, opt_state = carry
        grads, info = grad_fn(params, batch)
        return optimizer_step(optimizer, grads, params, opt_state), info

    return step


def minibatch_epochs(step: Callable, carry, batch: dict, key: jax.Array, num_epochs: int, num_minibatches: int):
    """`num_epochs` passes over the batch, each in `num_minibatches` freshly shuffled minibatches, each
    minibatch with a fresh "key" of its own (for losses that sample); returns the final carry and the
    per-step infos stacked [num_epochs, num_minibatches]."""

    def epoch(carry, k):
        minibatches = shuffled_minibatches(k, batch, num_minibatches)
        minibatches["key"] = jax.random.split(jax.random.fold_in(k, 1), num_minibatches)
        return jax.lax.scan(step, carry, minibatches)

    return jax.lax.scan(epoch, carry, jax.random.split(key, num_epochs))


def normalize_advantages(advantages: jax.Array) -> jax.Array:
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def clipped_value_error(value: jax.Array, old_value: jax.Array, target: jax.Array, clip: jax.Array) -> jax.Array:
    """mean(max((V - R)², (V_old + clip(V - V_old, -c, c) - R)²)): the value may not profit from
    moving further than c from the prediction the advantages were computed with."""
    clipped = old_value + jnp.clip(value - old_value, -clip, clip)
    return jnp.maximum((value - target) ** 2, (clipped - target) ** 2).mean()


def agent(
    *,
    Config: type,
    init_learner: Callable[[jax.Array, Env, Any], Any],
    sample: Sample,
    value: Value,
    update: Update,
    act: Callable,
) -> Agent:
    """An on-policy agent (see `pgjax.contract`) from its config class, its learner's initialiser, its
    sampling policy, its value function, its update and its `act`."""
    return Agent(
        Config=Config,
        init=functools.partial(init, init_learner=init_learner),
        iteration=functools.partial(iteration, sample=sample, value=value, update=update),
        act=act,
        steps_per_iteration=steps_per_iteration,
        warmup_steps=warmup_steps,
    )
