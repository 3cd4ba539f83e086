"""Brax adapter: the bare brax environment plus our own time limit and auto-reset.

Brax's EpisodeWrapper folds the time limit into `done`, and its AutoResetWrapper overwrites the
observation of the last step; we keep both facts apart instead: `terminated` comes from the task
(`state.done`), `truncated` from the step counter, and `final_obs` is the observation before reset.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .core import Env, first_state, next_state

TASKS = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
         "inverted_double_pendulum", "pusher", "reacher", "swimmer", "walker2d")
BACKENDS = ("generalized", "positional", "spring", "mjx")
DEFAULT_BACKEND = "generalized"
EPISODE_LENGTH = 1000


def _select(done, on_done, otherwise):
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), on_done, otherwise)


def make_brax(task: str, backend: str = DEFAULT_BACKEND, episode_length: int = EPISODE_LENGTH) -> Env:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs as brax_envs

        env = brax_envs.get_environment(task, backend=backend)

    def reset(key):
        inner = env.reset(key)
        return first_state((inner, jnp.zeros((), jnp.int32)), inner.obs)

    def step(state, action, key):
        inner, t = state.inner
        # Brax tasks take actions in [-1, 1] already; clip what the policy sampled outside.
        stepped = env.step(inner, jnp.clip(action, -1.0, 1.0))
        t = t + 1
        terminated = stepped.done > 0.5
        truncated = t >= episode_length
        done = jnp.logical_or(terminated, truncated)
        fresh = env.reset(key)
        inner_next = _select(done, fresh, stepped)
        t_next = jnp.where(done, 0, t)
        return next_state(state, (inner_next, t_next), inner_next.obs, stepped.obs,
                          stepped.reward, terminated, truncated)

    return Env(f"brax/{task}", backend, int(env.observation_size), int(env.action_size),
               episode_length, reset, step)
