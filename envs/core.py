"""The one functional environment interface every agent sees.

`reset(key) -> EnvState` and `step(state, action, key) -> EnvState` for a single environment
instance (vmap for many). Actions at this interface are in [-1, 1]; adapters rescale them.
`terminated` (a true terminal state: do not bootstrap) and `truncated` (time limit: bootstrap from
`final_obs`) are kept apart. Episodes auto-reset, and `final_obs` holds the real last observation
of an episode that just ended (equal to `obs` on every other step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class EpisodeStats:
    """Running and last-completed episode return/length, for training curves."""

    episode_return: jax.Array
    episode_length: jax.Array
    last_return: jax.Array
    last_length: jax.Array
    episodes_done: jax.Array

    @classmethod
    def zeros(cls) -> EpisodeStats:
        f, i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return cls(f, i, f, i, i)

    def record(self, reward: jax.Array, done: jax.Array) -> EpisodeStats:
        ret = self.episode_return + reward
        length = self.episode_length + 1
        return EpisodeStats(
            episode_return=jnp.where(done, 0.0, ret),
            episode_length=jnp.where(done, 0, length),
            last_return=jnp.where(done, ret, self.last_return),
            last_length=jnp.where(done, length, self.last_length),
            episodes_done=self.episodes_done + done.astype(jnp.int32),
        )


@struct.dataclass
class EnvState:
    inner: Any
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    stats: EpisodeStats

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


@dataclasses.dataclass(frozen=True)
class Env:
    """Static spec plus the pure reset/step functions of one environment."""

    name: str  # "backend/task"
    backend: str  # "gymnax" or the brax physics backend ("generalized", "spring", ...)
    obs_size: int
    action_size: int
    max_episode_steps: int
    reset: Callable[[jax.Array], EnvState] = dataclasses.field(repr=False, compare=False)
    step: Callable[[EnvState, jax.Array, jax.Array], EnvState] = dataclasses.field(repr=False, compare=False)
    # Adapters whose reset is expensive draw fresh initial states from a pool that `refresh` refills;
    # stepping loops call it once every `refresh_every` steps of each env (0: never needed).
    refresh: Callable[[EnvState], EnvState] | None = dataclasses.field(default=None, repr=False, compare=False)
    refresh_every: int = 0
    # The env's own action bounds: agents act in [-1, 1], which `step` maps onto [low, high].
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    # What else fixes the env's dynamics (episode length, action repeat, ...), recorded in runs.json.
    details: dict = dataclasses.field(default_factory=dict, compare=False)

    def to_env_units(self, action: jax.Array) -> jax.Array:
        """An agent's action as the env applies it, in the env's own units."""
        unit_bounds = self.action_low is None or (set(self.action_low) == {-1.0} and set(self.action_high) == {1.0})
        if unit_bounds:  # clipping alone, so that no rounding of a rescale changes the action
            return jnp.clip(action, -1.0, 1.0)
        return rescale_action(action, jnp.asarray(self.action_low), jnp.asarray(self.action_high))

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.backend}"


def rescale_action(action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Map [-1, 1] onto [low, high], clipping what the policy sampled outside."""
    action = jnp.clip(action, -1.0, 1.0)
    return low + 0.5 * (action + 1.0) * (high - low)


def first_state(inner: Any, obs: jax.Array) -> EnvState:
    false = jnp.zeros((), bool)
    return EnvState(
        inner=inner,
        obs=obs,
        reward=jnp.zeros((), jnp.float32),
        terminated=false,
        truncated=false,
        final_obs=obs,
        stats=EpisodeStats.zeros(),
    )


def next_state(
    prev: EnvState,
    inner: Any,
    obs: jax.Array,
    final_obs: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
) -> EnvState:
    reward = jnp.asarray(reward, jnp.float32).reshape(())
    terminated = jnp.asarray(terminated, bool).reshape(())
    truncated = jnp.logical_and(jnp.asarray(truncated, bool).reshape(()), ~terminated)
    stats = prev.stats.record(reward, jnp.logical_or(terminated, truncated))
    return EnvState(
        inner=inner,
        obs=obs,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        final_obs=final_obs,
        stats=stats,
    )


def batch_reset(env: Env, key: jax.Array, n: int) -> EnvState:
    return jax.vmap(env.reset)(jax.random.split(key, n))


def refresh(env: Env, state: EnvState) -> EnvState:
    """Refill the fresh-reset pools of a batch of envs (a no-op for adapters that need none)."""
    return jax.vmap(env.refresh)(state) if env.refresh is not None else state


def batch_step(env: Env, state: EnvState, action: jax.Array, key: jax.Array) -> EnvState:
    return jax.vmap(env.step)(state, action, jax.random.split(key, action.shape[0]))
