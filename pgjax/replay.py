"""Replay buffer inside the pure train state: flashbax's item buffer (vmaps over seeds)."""
from __future__ import annotations

import flashbax as fbx
import jax
import jax.numpy as jnp

from pgjax.rollout import Transition


def make_buffer(capacity: int, batch_size: int):
    return fbx.make_item_buffer(max_length=capacity, min_length=1, sample_batch_size=batch_size,
                                add_batches=True)


def transition_item(obs_size: int, action_size: int) -> dict:
    """The stored fields of one transition: everything a TD target needs, nothing else."""
    f = jnp.float32
    return {"obs": jnp.zeros(obs_size, f), "action": jnp.zeros(action_size, f), "reward": jnp.zeros((), f),
            "terminated": jnp.zeros((), f), "next_obs": jnp.zeros(obs_size, f)}


def as_items(t: Transition) -> dict:
    """A batch of env transitions (leading axes flattened) in the stored form."""
    items = {"obs": t.obs, "action": t.action, "reward": t.reward,
             "terminated": t.terminated.astype(jnp.float32), "next_obs": t.next_obs}
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[t.reward.ndim:]), items)
