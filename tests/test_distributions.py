import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from pgjax.distributions import (
    gaussian_entropy,
    gaussian_log_prob,
    log_one_minus_tanh_sq,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
)


def test_tanh_gaussian_log_prob_matches_numerical_change_of_variables():
    """density of a = tanh(u) is d/da P(tanh(u) <= a) = d/da Φ((atanh(a) - μ)/σ); check by finite differences."""
    mean, log_std = 0.3, np.log(0.8)
    a = np.linspace(-0.995, 0.995, 41)
    h = 1e-5
    cdf = lambda x: stats.norm.cdf((np.arctanh(x) - mean) / np.exp(log_std))
    numeric = (cdf(a + h) - cdf(a - h)) / (2 * h)
    u = jnp.arctanh(jnp.asarray(a, jnp.float32))[:, None]
    ours = np.exp(tanh_gaussian_log_prob(u, jnp.full_like(u, mean), jnp.full_like(u, log_std)))
    np.testing.assert_allclose(ours, numeric, rtol=2e-3)


def test_log_one_minus_tanh_sq_is_exact_and_finite_for_large_u():
    u = jnp.asarray([-30.0, -5.0, -0.5, 0.0, 0.5, 5.0, 30.0])
    small = jnp.abs(u) < 6
    naive = jnp.log(1.0 - jnp.tanh(u) ** 2)
    np.testing.assert_allclose(log_one_minus_tanh_sq(u)[small], naive[small], rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(log_one_minus_tanh_sq(u)))
    np.testing.assert_allclose(log_one_minus_tanh_sq(jnp.asarray(30.0)), np.log(4.0) - 60.0, rtol=1e-6)


def test_tanh_gaussian_sample_is_bounded_and_consistent():
    key = jax.random.PRNGKey(0)
    mean, log_std = jnp.zeros((1000, 2)), jnp.zeros((1000, 2))
    a, logp = tanh_gaussian_sample(key, mean, log_std)
    assert a.shape == (1000, 2) and np.all(np.abs(a) <= 1.0)
    u = jnp.arctanh(jnp.clip(a, -0.999999, 0.999999))
    np.testing.assert_allclose(logp, tanh_gaussian_log_prob(u, mean, log_std), atol=1e-2)


def test_gaussian_log_prob_and_entropy_match_scipy():
    x, mean, log_std = np.array([[0.2, -1.0]]), np.array([[0.0, 0.5]]), np.array([[-0.3, 0.4]])
    expected = stats.norm.logpdf(x, mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(gaussian_log_prob(x, mean, log_std), expected, rtol=1e-5)
    np.testing.assert_allclose(gaussian_entropy(log_std), stats.norm.entropy(0, np.exp(log_std)).sum(-1), rtol=1e-5)
