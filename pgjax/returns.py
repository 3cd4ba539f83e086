"""Advantage estimation with terminations and truncations kept apart."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Generalised advantage estimation over a [T, ...] rollout.

    next_values[t] is V of the true next observation (the pre-reset `final_obs` at episode ends), so
    δ_t = r_t + γ(1 - terminated_t) V(s'_t) - V(s_t) bootstraps through a truncation and not through a
    termination; the recursion Â_t = δ_t + γλ(1 - done_t) Â_{t+1} stops at any episode end, because
    step t+1 belongs to the next episode. Returns (advantages, value targets = Â + V).
    """
    not_term = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - done.astype(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values

    def backward(carry, step):
        delta, cont = step
        adv = delta + gamma * lam * cont * carry
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values
