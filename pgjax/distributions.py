"""Diagonal Gaussian and tanh-squashed Gaussian log-densities, written out so they can be tested."""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_2PI = jnp.log(2.0 * jnp.pi)


def gaussian_log_density(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(x_i; mean_i, exp(log_std_i)^2) per dimension."""
    z = (x - mean) * jnp.exp(-log_std)
    return -0.5 * z**2 - log_std - 0.5 * LOG_2PI


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(x; mean, exp(log_std)^2), summed over the last (action) axis."""
    return jnp.sum(gaussian_log_density(x, mean, log_std), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    return jnp.sum(log_std + 0.5 * (1.0 + LOG_2PI), axis=-1)


def gaussian_kl(mean: jax.Array, log_std: jax.Array, other_mean: jax.Array, other_log_std: jax.Array) -> jax.Array:
    """KL(N(mean, std²) ‖ N(other_mean, other_std²)) of diagonal Gaussians, summed over the last axis."""
    var_ratio = jnp.exp(2.0 * (log_std - other_log_std))
    mahalanobis = ((mean - other_mean) * jnp.exp(-other_log_std)) ** 2
    return jnp.sum(other_log_std - log_std + 0.5 * (var_ratio + mahalanobis - 1.0), axis=-1)


def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def log_one_minus_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and finite for large |u|."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log-density of a = tanh(u), u ~ N(mean, std^2), evaluated at the pre-squash sample u."""
    return gaussian_log_prob(u, mean, log_std) - jnp.sum(log_one_minus_tanh_sq(u), axis=-1)


def tanh_gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised a = tanh(mean + std * eps) and its log-density."""
    u = gaussian_sample(key, mean, log_std)
    return jnp.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)
