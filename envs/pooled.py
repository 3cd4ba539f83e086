"""Time limit and auto-reset for physics environments whose reset is expensive (Brax, Playground).

Unlike their own training wrappers (time limit folded into `done`, every episode restarted from one cached first
state), we keep `terminated` (from the task) and `truncated` (from our step counter) apart, expose the
observation before reset as `final_obs`, and start every episode from a fresh random state. Fresh states come
from a pool of `POOL_SIZE` per env, which the stepping loops refill once every `REFRESH_EVERY` of its steps
(`pgjax.envs.refresh`); an episode that ends takes the pool's next unused state, and reuses them in turn if it
runs out before the refill. `reset` computes one state and fills the pool with copies of it. Why a pool, when
the loops refill, and what a reset costs: docs/design.md (Notes, fresh random states) and docs/speed.md (DMC
stepping).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .core import Env, first_state, next_state

POOL_SIZE = 8
REFRESH_EVERY = 32


@struct.dataclass
class PooledInner:
    state: Any  # the wrapped env's state of the running episode (with .obs, .reward, .done)
    t: jax.Array  # steps taken in this episode (for the time limit)
    pool: Any  # POOL_SIZE fresh reset states, stacked (copies of the first state until the first refill)
    pool_used: jax.Array  # how many of them episodes have taken since the last refill
    pool_key: jax.Array


PHYSICS_RESET, PHYSICS_STEP = "physics_reset", "physics_step"


def named(fn: Callable, name: str) -> Callable:
    """`fn` under another name (what a jitted call is called in a program)."""

    def call(*args):
        return fn(*args)

    call.__name__ = call.__qualname__ = name
    return call


def _select(done, on_done, otherwise):
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), on_done, otherwise)


def pooled_env(
    name: str,
    backend: str,
    obs_size: int,
    action_size: int,
    episode_length: int,
    inner_reset: Callable[[jax.Array], Any],
    inner_step: Callable[[Any, jax.Array], Any],
    action_low: tuple[float, ...],
    action_high: tuple[float, ...],
    details: dict,
    pool_size: int = POOL_SIZE,
    refresh_every: int = REFRESH_EVERY,
) -> Env:
    """An `Env` over `inner_reset(key) -> s` and `inner_step(s, env_action) -> s`, where `s.done` is the
    task's own termination; `details` are recorded with a run's results. Each env keeps `pool_size` fresh
    states, refilled every `refresh_every` of its steps."""
    # jitted so that JAX traces each once, however many places call them (a reset runs one state, a refill
    # a vmapped pool; MJX's functions take tens of seconds to trace); inside a jitted loop they are inlined,
    # one copy per call site, which `pgjax bench --compile` counts by these names
    inner_reset = jax.jit(named(inner_reset, PHYSICS_RESET))
    inner_step = jax.jit(named(inner_step, PHYSICS_STEP))

    def fresh_pool(key):
        if pool_size == 1:  # no vmap over a pool of one: it ran slower than the state alone (docs/design.md)
            return jax.tree.map(lambda x: x[None], inner_reset(key))
        return jax.vmap(inner_reset)(jax.random.split(key, pool_size))

    def reset(key):
        state_key, next_key = jax.random.split(key)
        inner = inner_reset(state_key)
        pool = jax.tree.map(lambda x: jnp.broadcast_to(x, (pool_size, *jnp.shape(x))), inner)
        pooled = PooledInner(
            state=inner, t=jnp.zeros((), jnp.int32), pool=pool, pool_used=jnp.zeros((), jnp.int32), pool_key=next_key
        )
        return first_state(pooled, inner.obs)

    def refresh(state):
        pool_key, next_key = jax.random.split(state.inner.pool_key)
        inner = state.inner.replace(pool=fresh_pool(pool_key), pool_used=jnp.zeros((), jnp.int32), pool_key=next_key)
        return state.replace(inner=inner)

    def step(state, action, key):
        del key  # the next episode's start comes from the pool
        inner = state.inner
        stepped = inner_step(inner.state, spec.to_env_units(action))
        t = inner.t + 1
        terminated = stepped.done > 0.5
        truncated = t >= episode_length
        done = jnp.logical_or(terminated, truncated)
        slot = 0 if pool_size == 1 else inner.pool_used % pool_size
        fresh = jax.tree.map(lambda x: x[slot], inner.pool)
        running = _select(done, fresh, stepped)
        inner = inner.replace(state=running, t=jnp.where(done, 0, t), pool_used=inner.pool_used + done)
        return next_state(state, inner, running.obs, stepped.obs, stepped.reward, terminated, truncated)

    spec = Env(
        name,
        backend,
        obs_size,
        action_size,
        episode_length,
        reset,
        step,
        refresh,
        refresh_every,
        action_low,
        action_high,
        details=details,
    )
    return spec
