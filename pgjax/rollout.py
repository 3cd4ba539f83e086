"""Collecting experience from a batch of environments: one place for every agent."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pgjax.envs import Env, EnvState, batch_step, refresh


@struct.dataclass
class Transition:
    """One step of every env. `next_obs` is the true next observation (pre-reset at episode ends)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array
    extras: Any  # whatever the policy returned beside the action (log-prob, value, ...)

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


Policy = Callable[[jax.Array, jax.Array], tuple[jax.Array, Any]]  # (obs, key) -> (action, extras)


def env_step(env: Env, env_state: EnvState, policy: Policy, key: jax.Array) -> tuple[EnvState, Transition]:
    """Act on the current observations, step every env, return the transition (raw observations)."""
    act_key, step_key = jax.random.split(key)
    action, extras = policy(env_state.obs, act_key)
    nxt = batch_step(env, env_state, action, step_key)
    return nxt, Transition(
        obs=env_state.obs,
        action=action,
        reward=nxt.reward,
        terminated=nxt.terminated,
        truncated=nxt.truncated,
        next_obs=nxt.final_obs,
        extras=extras,
    )


def rollout(env: Env, env_state: EnvState, policy: Policy, key: jax.Array, length: int) -> tuple[EnvState, Transition]:
    """`length` steps of every env under a fixed policy; the result is stacked [length, num_envs, ...].
    A rollout longer than the env's refresh period refills its fresh-reset pools at its start and every
    period after (shorter ones are refilled by the driver, before each iteration that needs it)."""
    every = env.refresh_every if length > env.refresh_every else 0

    def body(state, step):
        t, k = step
        if every:  # t is the same for every run, so this stays a real branch
            state = jax.lax.cond(t % every == 0, partial(refresh, env), lambda s: s, state)
        return env_step(env, state, policy, k)

    return jax.lax.scan(body, env_state, (jnp.arange(length), jax.random.split(key, length)))


def uniform_policy(action_size: int) -> Policy:
    def policy(obs, key):
        return jax.random.uniform(key, (obs.shape[0], action_size), minval=-1.0, maxval=1.0), ()

    return policy


def mean_train_return(env_state: EnvState) -> jax.Array:
    """Mean return of the last completed episode of each env (NaN before any episode ended)."""
    stats = env_state.stats
    finished = stats.episodes_done > 0
    total = jnp.sum(jnp.where(finished, stats.last_return, 0.0))
    return jnp.where(finished.any(), total / jnp.maximum(finished.sum(), 1), jnp.nan)
