import numpy as np

from pgjax.returns import gae


def brute_force_gae(r, v, v_next, term, trunc, gamma, lam):
    """Advantage of each step as an explicit sum over the rest of its own episode segment."""
    T = len(r)
    done = term | trunc
    adv = np.zeros(T)
    for t in range(T):
        total, factor = 0.0, 1.0
        for k in range(t, T):
            delta = r[k] + gamma * (0.0 if term[k] else v_next[k]) - v[k]
            total += factor * delta
            if done[k]:
                break
            factor *= gamma * lam
        adv[t] = total
    return adv


def test_gae_matches_brute_force_with_terminations_and_truncations():
    rng = np.random.default_rng(0)
    T, gamma, lam = 12, 0.97, 0.9
    r, v, v_next = rng.normal(size=(3, T))
    term = np.zeros(T, bool)
    trunc = np.zeros(T, bool)
    term[3] = True  # true terminal: no bootstrap, recursion cut
    trunc[7] = True  # time limit: bootstrap from V(final_obs), recursion cut
    term[10] = trunc[10] = False
    adv, targets = gae(r, v, v_next, term, term | trunc, gamma, lam)
    expected = brute_force_gae(r, v, v_next, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected + v, rtol=1e-5, atol=1e-5)
    # the truncated step keeps its bootstrap term, the terminated step has none
    np.testing.assert_allclose(adv[7], r[7] + gamma * v_next[7] - v[7], rtol=1e-5)
    np.testing.assert_allclose(adv[3], r[3] - v[3], rtol=1e-5)


def test_gae_batched_over_envs():
    rng = np.random.default_rng(1)
    T, N = 9, 3
    r, v, v_next = rng.normal(size=(3, T, N))
    term = rng.random((T, N)) < 0.15
    trunc = (rng.random((T, N)) < 0.15) & ~term
    adv, _ = gae(r, v, v_next, term, term | trunc, 0.99, 0.95)
    for n in range(N):
        expected = brute_force_gae(r[:, n], v[:, n], v_next[:, n], term[:, n], trunc[:, n], 0.99, 0.95)
        np.testing.assert_allclose(adv[:, n], expected, rtol=1e-5, atol=1e-5)
