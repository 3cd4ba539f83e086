"""Advantage estimation with terminations and truncations kept apart."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# "gae": Â_t, the λ-weighted sum of TD errors; "lambda_target": r_t + γ v^λ_{t+1} − V(s_t), the advantage
# of the one-step target through the λ-return of the next state (Brax's PPO, from V-trace).
ADVANTAGES = ("gae", "lambda_target")


def continues(done: jax.Array, segment: int = 0) -> jax.Array:
    """1 where step t+1 continues step t's return: not at an episode end, nor (segment > 0) at the end
    of each `segment`-step piece of the rollout, where the recursion restarts from V (Brax computes
    GAE per unroll of `unroll_length` steps)."""
    out = 1.0 - done.astype(jnp.float32)
    if segment:
        segment_end = (jnp.arange(done.shape[0]) + 1) % segment == 0
        out = out * (1.0 - segment_end.astype(out.dtype)).reshape((-1,) + (1,) * (done.ndim - 1))
    return out


def gae(
    rewards,
    values,
    next_values,
    terminated,
    done,
    gamma,
    lam,
    *,
    segment: int = 0,
    mask_truncated: bool = False,
    advantage: str = "gae",
):
    """Generalised advantage estimation over a [T, ...] rollout.

    next_values[t] is V of the true next observation (the pre-reset `final_obs` at episode ends), so
    δ_t = r_t + γ(1 - terminated_t) V(s'_t) - V(s_t) bootstraps through a truncation and not through a
    termination; the recursion Â_t = δ_t + γλ c_t Â_{t+1} stops at any episode end (c_t = 0), because
    step t+1 belongs to the next episode. With `mask_truncated` (Brax's trainers), a step that ends at a
    time limit has δ_t = 0 instead: no advantage, and its own value as target. Returns (advantages, value
    targets = Â + V); `advantage = "lambda_target"` gives δ_t + γ c_t Â_{t+1} as the advantages instead.
    """
    not_term = 1.0 - terminated.astype(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    if mask_truncated:
        deltas = deltas * (1.0 - done.astype(rewards.dtype) * not_term)
    cont = continues(done, segment).astype(rewards.dtype)

    def backward(carry, step):
        delta, c = step
        adv = delta + gamma * lam * c * carry
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(values[0]), (deltas, cont), reverse=True)
    targets = advantages + values
    if advantage == "lambda_target":
        next_advantages = jnp.concatenate([advantages[1:], jnp.zeros_like(advantages[:1])])
        advantages = deltas + gamma * cont * next_advantages
    return advantages, targets
