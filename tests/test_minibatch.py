import itertools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from pgjax.minibatch import random_permutation, shuffled_minibatches


def permutations(n, count, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, n)))(keys))


def test_every_permutation_of_four_is_equally_likely():
    perms = permutations(4, 24_000)
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=24)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_large_permutation_is_a_bijection_and_uniform_over_several_rounds():
    """n = 3000 needs two sorting rounds: each element's destination must still be uniform."""
    n = 3000
    perms = permutations(n, 4_000, seed=1)
    assert all(np.array_equal(np.sort(p), np.arange(n)) for p in perms[:50])
    where_first = np.argmax(perms == 0, axis=1)  # position element 0 was sent to
    counts = np.bincount(where_first * 10 // n, minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    first_before_last = np.mean(where_first < np.argmax(perms == n - 1, axis=1))
    assert abs(first_before_last - 0.5) < 0.03


def test_minibatches_cover_every_sample_once():
    batch = {"x": jnp.arange(32.0), "y": jnp.arange(64.0).reshape(32, 2)}
    mb = shuffled_minibatches(jax.random.PRNGKey(3), batch, 4)
    assert mb["x"].shape == (4, 8) and mb["y"].shape == (4, 8, 2)
    np.testing.assert_array_equal(np.sort(np.asarray(mb["x"]).ravel()), np.arange(32.0))
    np.testing.assert_array_equal(np.asarray(mb["y"])[..., 0], 2 * np.asarray(mb["x"]))  # rows stay together
    assert not np.array_equal(np.asarray(mb["x"]).ravel(), np.arange(32.0))
