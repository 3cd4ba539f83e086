"""MDPO's losses checked against the authors' code, github.com/manantomar/Mirror-Descent-Policy-Optimization
(TensorFlow 1 on stable-baselines 2):
 * off-policy: mdpo_off/mdpo.py (the actor, Q and V losses), mdpo_off/policies.py (`make_actor`: the
   per-dimension log-densities of the tanh-Gaussian) and mdpo_off/tf_tsallis_statistics.py (`tf_log_q`);
 * on-policy: mdpo_on/mdpo.py (the "multistep-SGD" surrogate, ρ Â − KL(new ‖ old) / t_k).

Each loss is written out again here in float64 numpy from the reference's formulas, then compared with
ours, also run in float64, value and gradient with respect to the networks' outputs (μ and log σ of the
actor, the Q_j and V values). Our functions are fed stand-in "networks" whose outputs are their
parameters, so `jax.grad` with respect to the parameters is the gradient with respect to the outputs.

Deliberate numeric differences from the reference (kept out of the numpy copies, sized by
`test_reference_std_epsilon_is_a_negligible_difference`):
 * the reference adds EPS = 1e-6 to σ in the Gaussian density, (u − μ)/(σ + 1e-6); ours divides by σ.
   On the inputs below it moves the actor loss by 4e-8 to 4e-6 relative and its output gradient by
   1e-6 to 6e-6 relative (q′ = 1, 1.5, 2; the test bounds both by 1e-4). It grows as 1e-6/σ, so it
   would matter only near the clip's smallest σ (e^-20), where the reference's density is meaningless;
 * the reference clips 1 − tanh²u to [0, 1] before adding 1e-6 (passing the gradient straight
   through); 1 − tanh²u is already in [0, 1], so this changes neither value nor gradient.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgjax import distributions
from pgjax.agents import mdpo_off, mdpo_on

LOG_DENSITY_FLOOR = np.log(1e-6)
B, A, OBS = 8, 3, 4  # batch, action size, observation size
W_Q = np.random.default_rng(123).normal(size=(OBS, A))


@pytest.fixture(autouse=True)
def float64_log_2pi(monkeypatch):
    """pgjax.distributions.LOG_2PI is made once, at import, with x64 off (tests/conftest.py): a float32
    log 2π, 3.1e-8 below the float64 one. That shifts every per-dimension log-density by 1.6e-8 in these
    float64 comparisons (a constant: no effect on gradients at q′ = 1, a relative 1e-8 one for q′ ≠ 1)
    and is nothing in the float32 runs it serves; the float64 value is put in for these tests."""
    assert abs(float(distributions.LOG_2PI) - np.log(2.0 * np.pi)) < 1e-7
    monkeypatch.setattr(distributions, "LOG_2PI", np.log(2.0 * np.pi))


class Outputs:
    """A stand-in network whose output is its parameters (the same for any input)."""

    @staticmethod
    def apply(params, *inputs):
        return params


class LinearQ:
    """A stand-in critic Q(s, a) = b + a·w with b per sample: depends on the action, and the gradient
    with respect to b is the gradient with respect to the output Q(s, a)."""

    @staticmethod
    def apply(params, obs, action):
        return params["b"] + action @ params["w"]


def q1(obs, action):
    """The first critic in the actor loss: a smooth function of the action (numpy or jax arrays)."""
    return ((obs @ W_Q) * action).sum(-1) - 0.7 * (action**2).sum(-1)


# ----------------------------------------------------------------------------- the reference, in numpy


def ref_log_q(log_density, q_prime):
    """tf_log_q(exp(l), q) with q = 2 − q′ (make_actor): the density floored at 1e-6, then
    log_q(p) = (p^(1−q) − 1)/(1 − q), or log p when q = 1."""
    p = np.maximum(np.exp(log_density), 1e-6)
    q = 2.0 - q_prime
    return np.log(p) if q == 1.0 else (p ** (1.0 - q) - 1.0) / (1.0 - q)


def ref_squashed_log_density(u, mu, log_std, std_eps=0.0):
    """make_actor's "q-log" branch, per action dimension: the Gaussian log-density of u (the reference
    divides by σ + EPS, EPS = 1e-6: `std_eps`), less log(clip(1 − tanh²u, 0, 1) + 1e-6)."""
    a = np.tanh(u)
    gaussian = -0.5 * (((u - mu) / (np.exp(log_std) + std_eps)) ** 2 + 2.0 * log_std + np.log(2.0 * np.pi))
    return gaussian - np.log(np.clip(1.0 - a**2, 0.0, 1.0) + 1e-6)


def ref_actor_loss(mu, log_std, eps, old_mu, old_log_std, obs, c, lam, q_prime, std_eps=0.0):
    """policy_kl_loss + policy_reg_loss of mdpo_off/mdpo.py: the sample ã = tanh(μ + σ ε) goes into the
    old policy's log-density as well (its make_actor is called with action=policy_out)."""
    u = mu + np.exp(log_std) * eps
    log_pi = ref_log_q(ref_squashed_log_density(u, mu, log_std, std_eps), q_prime).sum(-1)
    log_old = ref_log_q(ref_squashed_log_density(u, old_mu, old_log_std, std_eps), q_prime).sum(-1)
    policy_kl_loss = np.mean(log_pi * c + q_prime * (lam - c) * log_old - q1(obs, np.tanh(u)))
    return policy_kl_loss + 1e-3 * np.mean(mu**2) + 1e-3 * np.mean(log_std**2)


def finite_difference_gradient(f, x, h=1e-4):
    """Central differences, Richardson-extrapolated from steps h and h/2 (error O(h⁴) + round-off)."""

    def central(step):
        g = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            d = np.zeros_like(x)
            d[i] = step
            g[i] = (f(x + d) - f(x - d)) / (2.0 * step)
        return g

    return (4.0 * central(h / 2) - central(h)) / 3.0


# ----------------------------------------------------------------------------- off-policy


def actor_inputs(seed=0):
    """Actor outputs of the current and the old policy. In rows 0 and 1 the old policy sits far from
    the sample (narrow and shifted), so some of its per-dimension densities fall below the 1e-6 floor."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-1.0, 1.0, (B, A))
    log_std = rng.uniform(-1.5, 0.5, (B, A))
    old_mu = mu + rng.normal(0.0, 0.3, (B, A))
    old_log_std = log_std + rng.normal(0.0, 0.3, (B, A))
    old_mu[0, 0] += 4.0
    old_log_std[0, 0] = -2.0
    old_mu[1, :] -= 3.0
    old_log_std[1, :] = -3.0
    obs = rng.normal(size=(B, OBS))
    return mu, log_std, old_mu, old_log_std, obs


def our_actor_loss(mu, log_std, old_mu, old_log_std, obs, key, config):
    """Our actor loss, its gradient with respect to (μ, log σ), and its sample ã and log_q π(ã|s)."""
    old_log_density = mdpo_off.old_policy_log_density(Outputs, (jnp.asarray(old_mu), jnp.asarray(old_log_std)))
    loss = lambda params: mdpo_off.actor_loss(params, Outputs, old_log_density, q1, jnp.asarray(obs), key, config)
    (value, (action, log_pi)), grads = jax.value_and_grad(loss, has_aux=True)((jnp.asarray(mu), jnp.asarray(log_std)))
    return float(value), tuple(np.asarray(g) for g in grads), np.asarray(action), np.asarray(log_pi)


@pytest.mark.parametrize("q_prime", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("kl_coef, entropy_coef", [(1.0, 0.2), (0.1, 0.3)])
def test_actor_loss_and_its_output_gradient_match_the_reference(q_prime, kl_coef, entropy_coef):
    """c·log_q π_θ(ã) + q′(λ − c)·log_q π_θk(ã) − Q_1(s, ã) + 1e-3 (mean μ² + mean (log σ)²), with the
    Tsallis index q′ ≠ 1 as well as the KL case q′ = 1, and λ ≠ c so the π_θk term counts. The
    reference's gradient (TF autodiff) flows through ã into π_θk's density; here it is taken by finite
    differences of the numpy loss with the same ε, so it also checks that ours lets it flow."""
    key = jax.random.PRNGKey(7)
    config = mdpo_off.Config(kl_coef=kl_coef, entropy_coef=entropy_coef, tsallis_q=q_prime, gaussian_reg=1e-3)
    mu, log_std, old_mu, old_log_std, obs = actor_inputs()
    with jax.enable_x64(True):
        eps = np.asarray(jax.random.normal(key, (B, A)))  # the draw gaussian_sample makes with this key
        assert eps.dtype == np.float64
        value, (g_mu, g_log_std), action, log_pi = our_actor_loss(mu, log_std, old_mu, old_log_std, obs, key, config)

    u = mu + np.exp(log_std) * eps
    np.testing.assert_allclose(action, np.tanh(u), rtol=0, atol=1e-15)  # the same sample ã
    # the floor is exercised (π_θk far below 1e-6 in some dimensions, above it in the rest), and no
    # density is so close to it that a finite-difference step could cross it
    old_l = ref_squashed_log_density(u, old_mu, old_log_std)
    new_l = ref_squashed_log_density(u, mu, log_std)
    assert (old_l < LOG_DENSITY_FLOOR).sum() >= 3 and (old_l > LOG_DENSITY_FLOOR).sum() >= 2 * B
    assert np.abs(np.concatenate([old_l, new_l]) - LOG_DENSITY_FLOOR).min() > 0.5

    args = (old_mu, old_log_std, obs, kl_coef, entropy_coef, q_prime)
    ref_value = ref_actor_loss(mu, log_std, eps, *args)
    np.testing.assert_allclose(log_pi, ref_log_q(new_l, q_prime).sum(-1), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13, atol=1e-13)

    ref_g_mu = finite_difference_gradient(lambda m: ref_actor_loss(m, log_std, eps, *args), mu)
    ref_g_log_std = finite_difference_gradient(lambda s: ref_actor_loss(mu, s, eps, *args), log_std)
    scale = max(np.abs(ref_g_mu).max(), np.abs(ref_g_log_std).max())
    np.testing.assert_allclose(g_mu, ref_g_mu, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(g_log_std, ref_g_log_std, rtol=0, atol=1e-8 * scale)


def test_reference_std_epsilon_is_a_negligible_difference():
    """The reference divides by σ + 1e-6 in the Gaussian density, ours by σ: on these inputs that moves
    the actor loss and its output gradient by a few 1e-6 relative at most (bounded here by 1e-4)."""
    mu, log_std, old_mu, old_log_std, obs = actor_inputs()
    with jax.enable_x64(True):
        eps = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (B, A)))
    for q_prime in (1.0, 2.0):
        args = (old_mu, old_log_std, obs, 1.0, 0.2, q_prime)
        ours = lambda m, s: ref_actor_loss(m, s, eps, *args)
        official = lambda m, s: ref_actor_loss(m, s, eps, *args, std_eps=1e-6)
        assert abs(official(mu, log_std) - ours(mu, log_std)) < 1e-4 * abs(ours(mu, log_std))
        for which in (0, 1):
            x = (mu, log_std)[which]
            swap = lambda f: (lambda v: f(v, log_std)) if which == 0 else (lambda v: f(mu, v))
            g_ours = finite_difference_gradient(swap(ours), x)
            g_official = finite_difference_gradient(swap(official), x)
            assert np.abs(g_official - g_ours).max() < 1e-4 * np.abs(g_ours).max()


@pytest.mark.parametrize("q_prime", [1.0, 1.5, 2.0])
def test_q_and_v_targets_and_losses_match_the_reference(q_prime):
    """Q_j → sg(r + γ(1 − d) V̄(s')) and V → sg(min_j Q_j(s, ã) − λ log_q π_θ(ã|s)), each with
    0.5·mean(·)², summed (qf1_loss + qf2_loss + value_loss of mdpo_off/mdpo.py); the V target uses the
    actor loss's own sample ã and its log_q density (Tsallis when q′ ≠ 1), terminal rows do not bootstrap,
    and no gradient reaches V̄, the Q_j(s, ã) or log π through the targets."""
    rng = np.random.default_rng(1)
    key = jax.random.PRNGKey(3)
    config = mdpo_off.Config(kl_coef=1.0, entropy_coef=0.2, tsallis_q=q_prime, gamma=0.95)
    mu, log_std, old_mu, old_log_std, obs = actor_inputs(seed=2)
    replay_action = rng.uniform(-1.0, 1.0, (B, A))
    reward = rng.normal(size=B)
    terminated = (np.arange(B) % 3 == 1).astype(np.float64)  # rows 1, 4, 7 terminal
    v_bar = rng.normal(size=(B, 1))  # V̄(s')
    target_critic = {"b": rng.normal(size=(2, B)), "w": rng.normal(size=(2, A))}  # the twins, for Q_j(s, ã)
    q_out = rng.normal(size=(2, B))  # Q_j(s, a) at the replay actions, through b
    v_out = rng.normal(size=(B, 1))  # V(s)

    with jax.enable_x64(True):
        eps = np.asarray(jax.random.normal(key, (B, A)))
        _, _, action, log_pi = our_actor_loss(mu, log_std, old_mu, old_log_std, obs, key, config)
        batch = {
            k: jnp.asarray(v)
            for k, v in dict(
                obs=obs, action=replay_action, reward=reward, terminated=terminated, next_obs=rng.normal(size=(B, OBS))
            ).items()
        }
        learner = types.SimpleNamespace(
            target_value_params=jnp.asarray(v_bar), critic_params=jax.tree.map(jnp.asarray, target_critic)
        )
        y_q, y_v = mdpo_off.critic_targets(
            learner, LinearQ, Outputs, batch, jnp.asarray(action), jnp.asarray(log_pi), config
        )
        params = ({"b": jnp.asarray(q_out), "w": jnp.asarray(target_critic["w"])}, jnp.asarray(v_out))
        (loss, info), (g_critic, g_v) = jax.value_and_grad(mdpo_off.critic_loss, has_aux=True)(
            params, LinearQ, Outputs, batch, y_q, y_v
        )

        def through_targets(v_bar_, critic_, log_pi_):
            targets = mdpo_off.critic_targets(
                types.SimpleNamespace(target_value_params=v_bar_, critic_params=critic_),
                LinearQ,
                Outputs,
                batch,
                jnp.asarray(action),
                log_pi_,
                config,
            )
            return mdpo_off.critic_loss(params, LinearQ, Outputs, batch, *targets)[0]

        leaks = jax.grad(through_targets, argnums=(0, 1, 2))(
            learner.target_value_params, learner.critic_params, jnp.asarray(log_pi)
        )

    # the reference, in numpy
    u = mu + np.exp(log_std) * eps
    log_pi_ref = ref_log_q(ref_squashed_log_density(u, mu, log_std), q_prime).sum(-1)
    q_backup = 1 * reward + (1 - terminated) * 0.95 * v_bar[:, 0]
    min_qf_pi = np.minimum(*(target_critic["b"][j] + np.tanh(u) @ target_critic["w"][j] for j in (0, 1)))
    assert np.any(target_critic["b"][0] + np.tanh(u) @ target_critic["w"][0] > min_qf_pi)  # both twins matter
    assert np.any(target_critic["b"][1] + np.tanh(u) @ target_critic["w"][1] > min_qf_pi)
    v_backup = min_qf_pi - 0.2 * log_pi_ref
    qf = [q_out[j] + replay_action @ target_critic["w"][j] for j in (0, 1)]
    qf1_loss, qf2_loss = (0.5 * np.mean((q_backup - qf[j]) ** 2) for j in (0, 1))
    value_loss = 0.5 * np.mean((v_out[:, 0] - v_backup) ** 2)

    np.testing.assert_allclose(np.asarray(y_q), q_backup, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(np.asarray(y_v), v_backup, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(float(loss), qf1_loss + qf2_loss + value_loss, rtol=1e-14)
    np.testing.assert_allclose(float(info["value_loss"]), value_loss, rtol=1e-14)
    # d/dQ_j and d/dV of the summed loss
    np.testing.assert_allclose(np.asarray(g_critic["b"]), [(qf[j] - q_backup) / B for j in (0, 1)], rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(g_v)[:, 0], (v_out[:, 0] - v_backup) / B, rtol=0, atol=1e-15)
    for leak in jax.tree.leaves(leaks):
        assert np.all(np.asarray(leak) == 0.0)


# ----------------------------------------------------------------------------- on-policy


def ref_gaussian_logp(x, mean, log_std):
    """stable-baselines' DiagGaussianProbabilityDistribution.logp = −neglogp."""
    return -(
        0.5 * np.sum(((x - mean) / np.exp(log_std)) ** 2, -1)
        + 0.5 * np.log(2.0 * np.pi) * x.shape[-1]
        + np.sum(log_std, -1)
    )


def ref_kl(mean, log_std, other_mean, other_log_std):
    """stable-baselines' DiagGaussianProbabilityDistribution.kl(other): KL(self ‖ other)."""
    std, other_std = np.exp(log_std), np.exp(other_log_std)
    return np.sum(other_log_std - log_std + (std**2 + (mean - other_mean) ** 2) / (2.0 * other_std**2) - 0.5, -1)


def ref_on_policy_loss(mu, log_std, old_mu, old_log_std, action, adv, t_k):
    """−surrgain of mdpo_on/mdpo.py (method "multistep-SGD", tsallis_q = 1):
    mean(ratio·Â) − mean(kloldnew)/t_k with kloldnew = policy_pi.kl(old_policy), i.e. KL(new ‖ old)."""
    ratio = np.exp(ref_gaussian_logp(action, mu, log_std) - ref_gaussian_logp(action, old_mu, old_log_std))
    return -(np.mean(ratio * adv) - np.mean(ref_kl(mu, log_std, old_mu, old_log_std)) / t_k)


def ref_on_policy_gradient(mu, log_std, old_mu, old_log_std, action, adv, t_k):
    """The same loss's gradient with respect to the new mean and log-std, by hand."""
    ratio = np.exp(ref_gaussian_logp(action, mu, log_std) - ref_gaussian_logp(action, old_mu, old_log_std))
    weight = (ratio * adv)[:, None] / len(adv)
    z = (action - mu) / np.exp(log_std)
    old_var = np.exp(2.0 * old_log_std)
    g_mu = -weight * z / np.exp(log_std) + (mu - old_mu) / old_var / t_k / len(adv)
    g_log_std = -weight * (z**2 - 1.0) + (np.exp(2.0 * log_std) / old_var - 1.0) / t_k / len(adv)
    return g_mu, g_log_std


def test_on_policy_loss_penalises_kl_new_to_old_as_the_reference():
    """Our policy loss against mdpo_on/mdpo.py's −(mean[ρ Â] − mean[KL(π_θ ‖ π_θk)]/t_k), value and
    gradient with respect to the new policy's mean and log-std, on random Gaussians whose standard
    deviations differ from the old ones (where KL(new ‖ old) and KL(old ‖ new) part)."""
    rng = np.random.default_rng(4)
    n, t_k = 16, 0.4
    old_mu, old_log_std = rng.normal(size=(n, A)), rng.uniform(-1.0, 0.5, (n, A))
    mu, log_std = old_mu + rng.normal(0.0, 0.5, (n, A)), old_log_std + rng.normal(0.0, 0.4, (n, A))
    action = old_mu + np.exp(old_log_std) * rng.normal(size=(n, A))  # collected with π_θk
    adv = rng.normal(size=n)
    adv = (adv - adv.mean()) / adv.std()
    with jax.enable_x64(True):
        batch = {
            "obs": jnp.zeros((n, OBS)),
            "action": jnp.asarray(action),
            "log_prob": jnp.asarray(ref_gaussian_logp(action, old_mu, old_log_std)),
            "advantage": jnp.asarray(adv),
        }
        (loss, info), (g_mu, g_log_std) = jax.value_and_grad(mdpo_on.policy_loss, has_aux=True)(
            (jnp.asarray(mu), jnp.asarray(log_std)),
            Outputs,
            batch,
            jnp.asarray(old_mu),
            jnp.asarray(old_log_std),
            1.0 / t_k,
        )

    args = (old_mu, old_log_std, action, adv, t_k)
    ref_mu, ref_log_std = ref_on_policy_gradient(mu, log_std, *args)
    # the hand gradient is the numpy loss's (central differences)
    np.testing.assert_allclose(
        finite_difference_gradient(lambda m: ref_on_policy_loss(m, log_std, *args), mu), ref_mu, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        finite_difference_gradient(lambda s: ref_on_policy_loss(mu, s, *args), log_std), ref_log_std, rtol=0, atol=1e-9
    )
    new_old, old_new = ref_kl(mu, log_std, old_mu, old_log_std), ref_kl(old_mu, old_log_std, mu, log_std)
    assert np.abs(new_old - old_new).mean() > 0.2 * new_old.mean()  # the direction matters here

    np.testing.assert_allclose(float(loss), ref_on_policy_loss(mu, log_std, *args), rtol=1e-13)
    np.testing.assert_allclose(float(info["kl"]), new_old.mean(), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(g_mu), ref_mu, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(g_log_std), ref_log_std, rtol=0, atol=1e-14)
