"""Shuffling a rollout into minibatches: one place for every on-policy agent."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def random_permutation(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n), as int32.

    This is `jax.random.permutation`'s algorithm: stable sorts by fresh random keys, for as many
    rounds as its own criterion asks for (ceil(3 log2 n / key bits)), so that the concatenated keys
    of all elements are distinct with high probability and the sample is then exactly uniform. The
    difference is the sort: each element's position is packed into the low bits of its random key,
    so every round is a sort of one uint32 array. XLA:CPU sorts a single primitive array with its
    fast native path, while a key-value sort calls the compiled comparator per comparison: for
    4 seeds x 4096 elements that is 0.6 ms instead of 6.3 ms, a third of PPO's update time on a CPU.
    Packing the position also makes every sort stable, which the algorithm requires.
    """
    position_bits = max(1, math.ceil(math.log2(max(n, 2))))
    key_bits = 32 - position_bits
    if key_bits < 8:
        raise ValueError(f"random_permutation supports n < 2**24 (got {n})")
    rounds = max(1, math.ceil(3 * math.log2(max(n, 2)) / key_bits))
    positions = jnp.arange(n, dtype=jnp.uint32)
    high_mask = jnp.uint32((0xFFFFFFFF << position_bits) & 0xFFFFFFFF)
    perm = jnp.arange(n, dtype=jnp.int32)
    for round_key in jax.random.split(key, rounds):
        packed = (jax.random.bits(round_key, (n,), jnp.uint32) & high_mask) | positions
        order = jnp.sort(packed) & jnp.uint32((1 << position_bits) - 1)
        perm = perm[order.astype(jnp.int32)]
    return perm


def shuffled_minibatches(key: jax.Array, batch, num_minibatches: int):
    """The batch (leading axis = samples) in random order, split into [num_minibatches, size, ...]."""
    n = jax.tree.leaves(batch)[0].shape[0]
    perm = random_permutation(key, n)
    return jax.tree.map(lambda x: x[perm].reshape((num_minibatches, -1) + x.shape[1:]), batch)
