"""gymnax adapter (gymnax >= 1.0: step returns terminated and truncated separately)."""

from __future__ import annotations

import jax.numpy as jnp

from .core import Env, first_state, next_state, rescale_action

TASKS = ("Pendulum-v1", "MountainCarContinuous-v0")


def make_gymnax(task: str) -> Env:
    import gymnax

    env, params = gymnax.make(task)
    space = env.action_space(params)
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    obs_size = int(env.observation_space(params).shape[0])

    def reset(key):
        obs, inner = env.reset(key, params)
        return first_state(inner, obs.astype(jnp.float32))

    def step(state, action, key):
        obs, inner, reward, terminated, truncated, info = env.step(
            key, state.inner, rescale_action(action, low, high), params
        )
        return next_state(
            state,
            inner,
            obs.astype(jnp.float32),
            info["final_observation"].astype(jnp.float32),
            reward,
            terminated,
            truncated,
        )

    return Env(
        f"gymnax/{task}",
        "gymnax",
        obs_size,
        int(space.shape[0]),
        int(params.max_steps_in_episode),
        reset,
        step,
        action_low=tuple(map(float, low)),
        action_high=tuple(map(float, high)),
        details={"episode_length": int(params.max_steps_in_episode)},
    )
