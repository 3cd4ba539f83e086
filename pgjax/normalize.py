"""Running observation normalisation and reward scaling: per-seed state, never a global."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

OBS_CLIP = 10.0
REWARD_CLIP = 10.0


@struct.dataclass
class RunningStats:
    """Mean and variance of everything seen so far (parallel Welford merge)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...] = ()) -> RunningStats:
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: jax.Array) -> RunningStats:
        batch = batch.reshape((-1,) + self.mean.shape)
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        total = self.count + b_count
        delta = b_mean - self.mean
        mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        return RunningStats(mean, m2 / total, total)

    def normalize(self, x: jax.Array, clip: float = OBS_CLIP) -> jax.Array:
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


@struct.dataclass
class RewardScaler:
    """Scales rewards by the running std of the discounted return (Engstrom et al. 2020)."""

    discounted_return: jax.Array  # one per env
    stats: RunningStats

    @classmethod
    def create(cls, num_envs: int) -> RewardScaler:
        return cls(jnp.zeros((num_envs,), jnp.float32), RunningStats.create(()))

    def update(self, rewards: jax.Array, dones: jax.Array, gamma: jax.Array) -> RewardScaler:
        """rewards, dones: [T, num_envs] in time order."""

        def accumulate(ret, step):
            r, d = step
            ret = ret * gamma + r
            return jnp.where(d, 0.0, ret), ret

        last, returns = jax.lax.scan(accumulate, self.discounted_return, (rewards, dones))
        return RewardScaler(last, self.stats.update(returns))

    def scale(self, rewards: jax.Array) -> jax.Array:
        return jnp.clip(rewards / jnp.sqrt(self.stats.var + 1e-8), -REWARD_CLIP, REWARD_CLIP)


def normalizer(state):
    """The observation normaliser of a loop's state (its `obs_stats`, if `normalize_observations`)."""
    return state.obs_stats.normalize if state.normalize_observations else (lambda x: x)
