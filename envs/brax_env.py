"""Brax adapter: the bare brax environment plus our own time limit and auto-reset.

Brax's EpisodeWrapper folds the time limit into `done`, and its AutoResetWrapper overwrites the
observation of the last step and restarts every episode from one cached first state; we keep
`terminated` (from the task) and `truncated` (from our step counter) apart, expose the observation
before reset as `final_obs`, and start every episode from a fresh random state.

Fresh states are not computed on every step (a full `env.reset` per step was reported ~20-45 % slower
than bare Brax on hopper; on the 2-core CPU both forms measured within ~10 % of it, but on accelerators
every op of a per-step reset is paid each step): each env holds a pool of `POOL_SIZE` fresh reset states, which the stepping loops
refill once every `REFRESH_EVERY` of its steps (`pgjax.envs.refresh`). An episode that ends takes the
next unused state of its pool; an env that ends more than `POOL_SIZE` episodes between two refills
(episodes shorter than REFRESH_EVERY / POOL_SIZE steps on average) reuses its pool's states in turn.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from .core import Env, first_state, next_state

TASKS = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
         "inverted_double_pendulum", "pusher", "reacher", "swimmer", "walker2d")
BACKENDS = ("generalized", "positional", "spring", "mjx")
DEFAULT_BACKEND = "generalized"
EPISODE_LENGTH = 1000
POOL_SIZE = 8
REFRESH_EVERY = 32


@struct.dataclass
class BraxInner:
    state: object  # brax.envs.base.State of the running episode
    t: jax.Array  # steps taken in this episode (for the time limit)
    pool: object  # POOL_SIZE fresh reset states, stacked
    pool_used: jax.Array  # how many of them episodes have taken since the last refill
    pool_key: jax.Array


class _NumpyWithLegacyClip:
    """jax.numpy, except that clip also takes the a_min/a_max keywords removed in jax 0.10."""

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def clip(x, min=None, max=None, a_min=None, a_max=None):
        return jnp.clip(x, a_min if min is None else min, a_max if max is None else max)


def _patch_brax_fluid() -> None:
    """brax 0.14.2's fluid model (swimmer) still calls jnp.clip(a_min=...), which jax 0.10 rejects."""
    from brax import fluid

    if not isinstance(fluid.jp, _NumpyWithLegacyClip):
        fluid.jp = _NumpyWithLegacyClip()


def _select(done, on_done, otherwise):
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), on_done, otherwise)


def make_brax(task: str, backend: str = DEFAULT_BACKEND, episode_length: int = EPISODE_LENGTH) -> Env:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs as brax_envs

        _patch_brax_fluid()
        env = brax_envs.get_environment(task, backend=backend)

    def fresh_pool(key):
        return jax.vmap(env.reset)(jax.random.split(key, POOL_SIZE))

    def reset(key):
        state_key, pool_key, next_key = jax.random.split(key, 3)
        inner = env.reset(state_key)
        pool = BraxInner(inner, jnp.zeros((), jnp.int32), fresh_pool(pool_key), jnp.zeros((), jnp.int32), next_key)
        return first_state(pool, inner.obs)

    def refresh(state):
        pool_key, next_key = jax.random.split(state.inner.pool_key)
        inner = state.inner.replace(pool=fresh_pool(pool_key), pool_used=jnp.zeros((), jnp.int32),
                                    pool_key=next_key)
        return state.replace(inner=inner)

    def step(state, action, key):
        del key  # the next episode's start comes from the pool
        inner = state.inner
        # Brax tasks take actions in [-1, 1] already; clip what the policy sampled outside.
        stepped = env.step(inner.state, jnp.clip(action, -1.0, 1.0))  # = to_env_units
        t = inner.t + 1
        terminated = stepped.done > 0.5
        truncated = t >= episode_length
        done = jnp.logical_or(terminated, truncated)
        fresh = jax.tree.map(lambda x: x[inner.pool_used % POOL_SIZE], inner.pool)
        running = _select(done, fresh, stepped)
        inner = inner.replace(state=running, t=jnp.where(done, 0, t), pool_used=inner.pool_used + done)
        return next_state(state, inner, running.obs, stepped.obs, stepped.reward, terminated, truncated)

    bounds = (-1.0,) * int(env.action_size), (1.0,) * int(env.action_size)
    return Env(f"brax/{task}", backend, int(env.observation_size), int(env.action_size),
               episode_length, reset, step, refresh, REFRESH_EVERY, *bounds)
