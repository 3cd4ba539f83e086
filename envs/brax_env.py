"""Brax adapter: the bare brax environment behind our time limit and fresh-start auto-reset (`pooled`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .core import Env
from .pooled import pooled_env

TASKS = (
    "ant",
    "halfcheetah",
    "hopper",
    "humanoid",
    "humanoidstandup",
    "inverted_pendulum",
    "inverted_double_pendulum",
    "pusher",
    "reacher",
    "swimmer",
    "walker2d",
)
BACKENDS = ("generalized", "positional", "spring", "mjx")
DEFAULT_BACKEND = "generalized"
EPISODE_LENGTH = 1000


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


def make_brax(task: str, backend: str = DEFAULT_BACKEND, episode_length: int = EPISODE_LENGTH) -> Env:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs as brax_envs

        _patch_brax_fluid()
        env = brax_envs.get_environment(task, backend=backend)

    # Brax's observation_size runs reset op by op, ~700 small compiles (36 s for pusher); its shape is enough
    obs_size = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1]
    # Brax tasks take actions in [-1, 1] already.
    unit = (-1.0,) * int(env.action_size), (1.0,) * int(env.action_size)
    return pooled_env(
        f"brax/{task}",
        backend,
        int(obs_size),
        int(env.action_size),
        episode_length,
        env.reset,
        env.step,
        *unit,
        {"episode_length": episode_length},
    )
