"""Replay buffer inside the pure train state: flashbax's item buffer (vmaps over seeds)."""

from __future__ import annotations

import flashbax as fbx
import jax
import jax.numpy as jnp
from flashbax.buffers.trajectory_buffer import TrajectoryBufferState

from pgjax.rollout import Transition


def buffer_capacity(config) -> int:
    """Transitions the replay buffer holds: a run never stores more than its budget."""
    return min(config.buffer_size, config.total_steps)


def replay_budget_problems(config) -> list[str]:
    """What makes an off-policy config's replay impossible, each naming the fields to change; shared
    by every off-policy agent (fields total_steps, num_envs, batch_size, buffer_size, warmup_steps)."""
    if min(config.total_steps, config.num_envs, config.batch_size, config.buffer_size) <= 0 or config.warmup_steps < 0:
        return []  # the agent's own positivity checks already say what is wrong
    capacity = buffer_capacity(config)
    holds = f"the replay buffer's capacity min(buffer_size, total_steps) = {capacity} transitions"
    limit = "total_steps" if config.total_steps < config.buffer_size else "buffer_size"
    out = []
    if config.warmup_steps % config.num_envs:
        out.append(f"warmup_steps = {config.warmup_steps} must be divisible by num_envs = {config.num_envs}")
    if config.batch_size > capacity:
        out.append(f"batch_size = {config.batch_size} exceeds {holds}: lower batch_size or raise {limit}")
    if config.warmup_steps > capacity:
        out.append(f"warmup_steps = {config.warmup_steps} exceeds {holds}: lower warmup_steps or raise {limit}")
    if config.num_envs > capacity:
        out.append(f"num_envs = {config.num_envs} exceeds {holds}: one step of every env must fit")
    return out


def make_buffer(capacity: int, batch_size: int):
    return fbx.make_item_buffer(max_length=capacity, min_length=1, sample_batch_size=batch_size, add_batches=True)


def is_replay(x) -> bool:
    """Whether x is a replay buffer's state (what `make_buffer` builds): found by type wherever an agent
    keeps it, so the policy part and the memory estimate never depend on a field's name."""
    return isinstance(x, TrajectoryBufferState)


def transition_item(obs_size: int, action_size: int, truncated: bool = False) -> dict:
    """The stored fields of one transition: everything a TD target needs, nothing else."""
    f = jnp.float32
    item = {
        "obs": jnp.zeros(obs_size, f),
        "action": jnp.zeros(action_size, f),
        "reward": jnp.zeros((), f),
        "terminated": jnp.zeros((), f),
        "next_obs": jnp.zeros(obs_size, f),
    }
    return {**item, "truncated": jnp.zeros((), f)} if truncated else item


def as_items(t: Transition, truncated: bool = False) -> dict:
    """A batch of env transitions (leading axes flattened) in the stored form."""
    items = {
        "obs": t.obs,
        "action": t.action,
        "reward": t.reward,
        "terminated": t.terminated.astype(jnp.float32),
        "next_obs": t.next_obs,
    }
    if truncated:
        items["truncated"] = t.truncated.astype(jnp.float32)
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[t.reward.ndim :]), items)
