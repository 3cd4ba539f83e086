"""Mixture-of-experts policies (PMOE, Ren et al. 2021): the pieces PMOE-SAC and PMOE-PPO share.
Every array with an expert axis has it right after the batch axes: [..., K] or [..., K, |A|]."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax.distributions import gaussian_log_prob

# deterministic evaluation: the expert whose mean action the agent's critic values most ("best_q", k*'s
# own rule applied to the means), the gate's most probable expert ("argmax"), or k ~ w(s) ("sample")
EXPERT_CHOICES = ("best_q", "argmax", "sample")


def select_expert(x: jax.Array, k: jax.Array) -> jax.Array:
    """x[..., k, ...] per sample: x is [..., K] or [..., K, D], k is [...] (integer)."""
    if x.ndim == k.ndim + 1:
        return jnp.take_along_axis(x, k[..., None], axis=-1)[..., 0]
    return jnp.take_along_axis(x, k[..., None, None], axis=-2)[..., 0, :]


def sample_expert(key: jax.Array, logits: jax.Array) -> jax.Array:
    return jax.random.categorical(key, logits, axis=-1)


def mixture_log_prob(x: jax.Array, logits: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log Σ_k w_k N(x; μ_k, σ_k²) = logsumexp_k(log w_k + log N(x; μ_k, σ_k²)), never forming a density
    that could underflow."""
    per_expert = gaussian_log_prob(x[..., None, :], mean, log_std)
    return jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1) + per_expert, axis=-1)


def frequency_loss(logits: jax.Array, best: jax.Array) -> jax.Array:
    """mean over states and experts of (w_k(s) − 1[k = k*(s)])²: its minimiser is w_k(s) = P(k is the
    best expert at s), a gradient for the gate that needs no gradient through the categorical draw."""
    onehot = jax.nn.one_hot(jax.lax.stop_gradient(best), logits.shape[-1])
    return ((jax.nn.softmax(logits, axis=-1) - onehot) ** 2).mean()


def expert_usage(best: jax.Array, num_experts: int) -> jax.Array:
    """Share of states whose best expert is k, per k (sums to 1)."""
    return jax.nn.one_hot(best, num_experts).reshape(-1, num_experts).mean(0)


def diagnostics(logits: jax.Array, best: jax.Array, last_usage: jax.Array) -> dict:
    """The gate's mean entropy; each expert's share of k* (`expert_usage`); `k_star_change`, how far
    those shares moved since the last update (total variation distance between the two batches'
    shares: a population-level measure of k* changing, not a per-state one, and a few percent from
    batch sampling alone); and how often k* is not the expert the gate favours."""
    log_w = jax.nn.log_softmax(logits, axis=-1)
    usage = expert_usage(best, logits.shape[-1])
    return {
        "gate_entropy": -(jnp.exp(log_w) * log_w).sum(-1).mean(),
        "expert_usage": usage,
        "k_star_change": 0.5 * jnp.abs(usage - last_usage).sum(),
        "gate_disagreement": (best != jnp.argmax(logits, axis=-1)).mean(),
    }


def evaluation_expert(key: jax.Array, logits: jax.Array, choice: str, q_of_means) -> jax.Array:
    """The expert a deterministic policy acts with; q_of_means() -> [..., K] is only called for "best_q"."""
    if choice == "best_q":
        return jnp.argmax(q_of_means(), axis=-1)
    return jnp.argmax(logits, axis=-1) if choice == "argmax" else sample_expert(key, logits)
