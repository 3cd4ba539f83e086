"""PMOE-SAC against the official code, re-derived in numpy.

The reference is quantumiracle/Popular-RL-Algorithms, `pmoe_sac.py` (PolicyNetwork.evaluate and
PMOE_Trainer.update): K tanh-Gaussian experts on one trunk and a softmax gate on the state; the critic
target takes one action per expert at s' with that expert's own log-density and picks the expert
k' ~ Categorical(w(s')); the actor back-propagates only the expert whose action the smaller twin critic
values most, plus an MSE "frequency" loss between the gate and the one-hot of that expert; α is tuned
from the same expert's log-density.

Our functions (agents/pmoe_sac.py, with pgjax/mixture.py and agents/sac.py) get random "network
outputs" through stand-in modules whose `apply` hands back their parameters (or a simple function of
them and the action), and we take `jax.grad` in float64. Where our code draws noise or an expert, the
test redraws the same numbers from the same keys and gives them to the numpy side, so both sides use
one set of draws.

Deliberate differences, each handled below where it arises:
 * the official log-density adds epsilon = 1e-6 inside log(1 - tanh(u)² + epsilon); ours is exact;
 * the official update standardises the batch rewards and multiplies them by reward_scale = 10; ours
   keeps that behind `standardize_batch_rewards` (off by default) and the plain `reward_scale` (1);
 * the official critic loss is nn.MSELoss (mean of squares); ours is SAC's ½ mean of squares.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pgjax import maxent, mixture
from pgjax.agents import pmoe_sac, sac

OFFICIAL_EPS = 1e-6  # PolicyNetwork.evaluate(state, epsilon=1e-6)
from official import LOG_2PI, TOL, Outputs  # noqa: E402


class Critic:
    """A stand-in Q-network: Q_j(s, a) = c_j + s_0 (d_j + e_j·a) + s_1 (g_j·a + h_j·a²). With the twins'
    c, g, h equal, a state with s_0 = 0 is an exact tie between the twins, and one with s_0 = s_1 = 0 an
    exact tie between all experts' actions as well."""

    @staticmethod
    def apply(p, obs, action):
        return (
            p["c"]
            + obs[..., 0] * (p["d"] + (p["e"] * action).sum(-1))
            + obs[..., 1] * ((p["g"] * action).sum(-1) + (p["h"] * action**2).sum(-1))
        )


def random_critic(rng, a_dim):
    shared = lambda x: np.repeat(x[None], 2, 0)
    return {
        "c": np.full(2, 0.3),
        "d": rng.normal(size=2),
        "e": rng.normal(size=(2, a_dim)),
        "g": shared(rng.normal(size=a_dim)),
        "h": shared(rng.normal(size=a_dim)),
    }


def critic_q(p, obs, action):
    """Both critics' values [2, ...] and gradients with respect to the action [2, ..., |A|], in numpy."""
    s0, s1 = obs[..., 0], obs[..., 1]
    q = np.stack(
        [
            p["c"][j] + s0 * (p["d"][j] + action @ p["e"][j]) + s1 * (action @ p["g"][j] + action**2 @ p["h"][j])
            for j in range(2)
        ]
    )
    dq_da = np.stack(
        [s0[..., None] * p["e"][j] + s1[..., None] * (p["g"][j] + 2 * p["h"][j] * action) for j in range(2)]
    )
    return q, dq_da


def official_evaluate(mean, log_std, draw, epsilon):
    """PolicyNetwork.evaluate with action_range 1: a = tanh(μ + σ z), log π_k = Σ [log N(μ + σ z; μ, σ)
    - log(1 - a² + epsilon)], one per expert. Returns (a, log π) with shapes [B, K, |A|] and [B, K]."""
    std = np.exp(log_std)
    u = mean + std * draw
    action = np.tanh(u)
    log_normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * LOG_2PI
    # 1 - a² written as sech(u)², the same number without float64's cancellation at large |u|
    return action, (log_normal - np.log(np.cosh(u) ** -2 + epsilon)).sum(-1)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def official_frequency_loss(logits, best):
    """mixing_coefficient_loss = F.mse_loss(w, one_hot(best_index)): the mean over states and experts
    of (w - 1[k = k*])². Returns its value and its gradient with respect to the gate's logits, the MSE
    gradient 2(w - onehot)/(B K) taken back through the softmax (the official gate ends in nn.Softmax)."""
    w = softmax(logits)
    onehot = np.eye(logits.shape[-1])[best]
    grad_w = 2 * (w - onehot) / w.size
    return ((w - onehot) ** 2).mean(), w * (grad_w - (w * grad_w).sum(-1, keepdims=True))


def test_frequency_loss_and_its_gate_gradient_match_the_official_mse():
    n, k = 64, 4
    rng = np.random.default_rng(0)
    logits, best = rng.normal(size=(n, k)) * 2, rng.integers(0, k, size=n)
    with jax.enable_x64(True):
        loss, grad = jax.value_and_grad(mixture.frequency_loss)(jnp.asarray(logits), jnp.asarray(best))
    official_loss, official_grad = official_frequency_loss(logits, best)
    np.testing.assert_allclose(loss, official_loss, **TOL)
    np.testing.assert_allclose(grad, official_grad, **TOL)


def critic_target_inputs(seed, n=512, k=3, a_dim=2):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 2))
    obs[::5, 0] = 0.0  # twin ties
    return dict(
        logits=rng.normal(size=(n, k)) * 1.5,
        mean=rng.normal(size=(n, k, a_dim)),
        log_std=rng.uniform(-2.0, 0.5, size=(n, k, a_dim)),
        next_obs=obs,
        critic=random_critic(rng, a_dim),
        reward=rng.normal(size=n) * 3 + 1,
        done=(np.arange(n) % 4 == 0).astype(float),
    )


def ours_critic_target(x, key, log_alpha, config, standardize=False):
    with jax.enable_x64(True):
        batch = {
            "next_obs": jnp.asarray(x["next_obs"]),
            "reward": jnp.asarray(x["reward"]),
            "terminated": jnp.asarray(x["done"]),
        }
        if standardize:  # as pmoe_sac.gradient_step does with the quirk on
            batch["reward"] = pmoe_sac.standardize_rewards(batch["reward"])
        actor_params = tuple(jnp.asarray(x[name]) for name in ("logits", "mean", "log_std"))
        target = pmoe_sac.critic_target(
            Outputs,
            Critic,
            actor_params,
            jax.tree.map(jnp.asarray, x["critic"]),
            jnp.exp(jnp.asarray(log_alpha)),
            batch,
            key,
            config,
        )
        # the draws ours makes: each expert's noise from `key`, then k' ~ Cat(w(s')) from fold_in(key, 1)
        draw = np.asarray(jax.random.normal(key, x["mean"].shape))
        k_next = np.asarray(jax.random.categorical(jax.random.fold_in(key, 1), jnp.asarray(x["logits"]), axis=-1))
        assert target.dtype == jnp.float64
    return np.asarray(target), draw, k_next


def official_critic_target(x, draw, k_next, log_alpha, gamma, reward, epsilon):
    """PMOE_Trainer.update's target: evaluate(next_state) gives one action and log-density per expert; the
    expert new_next_index ~ Categorical(w(s')) supplies both (torch.gather); target_q_min =
    min(Q̄_1, Q̄_2)(s', a') - α log π'; target = reward + (1 - done) γ target_q_min."""
    actions, log_probs = official_evaluate(x["mean"], x["log_std"], draw, epsilon)
    rows = np.arange(len(k_next))
    next_action, next_log_prob = actions[rows, k_next], log_probs[rows, k_next]
    q, _ = critic_q(x["critic"], x["next_obs"], next_action)
    target_q_min = np.minimum(q[0], q[1]) - np.exp(log_alpha) * next_log_prob
    return reward + (1 - x["done"]) * gamma * target_q_min, q


def test_per_expert_critic_target_with_a_sampled_expert_matches_the_official():
    """y = r + γ(1 - d)(min_j Q̄_j(s', a'_k') - α log π_k'(a'_k'|s')) with K = 3, k' ~ Cat(w(s')), exact twin
    ties and terminal transitions. Our default keeps the raw reward (`standardize_batch_rewards` off,
    reward_scale 1), which is the official line without its standardisation; with the quirk switched on
    and reward_scale 10 ours is the official line exactly."""
    x, key, log_alpha = critic_target_inputs(0), jax.random.PRNGKey(11), 0.2
    config = pmoe_sac.Config()
    gamma = config.gamma
    assert config.target_expert == "sample" and not config.standardize_batch_rewards and config.reward_scale == 1.0
    target, draw, k_next = ours_critic_target(x, key, log_alpha, config)
    # the official adds epsilon = 1e-6 in the log-det; ours is exact, so compare with epsilon = 0
    official, q = official_critic_target(x, draw, k_next, log_alpha, gamma, x["reward"], 0.0)
    np.testing.assert_allclose(target, official, **TOL)
    # the draws reach every expert and often not the gate's favourite, so selecting another way would show
    assert set(k_next) == {0, 1, 2} and (k_next != x["logits"].argmax(-1)).mean() > 0.2
    assert (q[0] == q[1]).sum() == len(q[0]) // 5 + 1 and (q[0] < q[1]).any() and (q[1] < q[0]).any()
    np.testing.assert_allclose(target[x["done"] == 1], x["reward"][x["done"] == 1], **TOL)
    # with the official epsilon the target moves by γ α Δlog π'; measured on these draws: 8.9e-3 at the
    # most (a next action saturated near ±1), 4e-6 in the median
    with_eps, _ = official_critic_target(x, draw, k_next, log_alpha, gamma, x["reward"], OFFICIAL_EPS)
    assert 0 < np.abs(with_eps - official).max() < 0.05

    # the quirk on: reward_scale * (r - mean) / (std + 1e-6), torch's std being the unbiased one
    quirk = pmoe_sac.Config(standardize_batch_rewards=True, reward_scale=10.0)
    target, draw, k_next = ours_critic_target(x, key, log_alpha, quirk, standardize=True)
    r = x["reward"]
    official, _ = official_critic_target(
        x, draw, k_next, log_alpha, gamma, 10.0 * (r - r.mean()) / (r.std(ddof=1) + 1e-6), 0.0
    )
    np.testing.assert_allclose(target, official, **TOL)


def test_critic_regression_gradient_is_half_the_official_mse_gradient():
    """The official twin losses are nn.MSELoss(Q_j, y) (mean of squares, gradient 2(Q_j - y)/B); ours is
    SAC's Σ_j ½ mean((Q_j - y)²), gradient (Q_j - y)/B: the same direction at half the scale, which Adam's
    update does not see (up to its ε)."""
    n = 64
    rng = np.random.default_rng(1)
    q, y = rng.normal(size=(2, n)), rng.normal(size=n)
    with jax.enable_x64(True):
        batch = {"obs": jnp.zeros((n, 3)), "action": jnp.zeros((n, 2))}
        (loss, _), grad = jax.value_and_grad(sac.critic_loss, has_aux=True)(
            jnp.asarray(q), Outputs, batch, jnp.asarray(y)
        )
    official_loss = ((q - y) ** 2).mean(-1).sum()  # q_value_loss1 + q_value_loss2
    np.testing.assert_allclose(loss, 0.5 * official_loss, **TOL)
    np.testing.assert_allclose(grad, 0.5 * 2 * (q - y) / n, **TOL)


def test_best_expert_actor_loss_and_alpha_gradients_match_the_official():
    """The official policy_loss = mean(α log π_k*(ã_k*|s) - Q_k*) + mixing_coefficient_loss, with
    Q_k = min(Q_1, Q_2)(s, ã_k) and k* = argmax_k Q_k, and alpha_loss = -mean(log α · (log π_k* + H̄)),
    H̄ = -|A|: the loss, and jax.grad of ours with respect to every expert's mean and clamped log-std, the
    gate's logits and log α. Includes exact ties between the twins (torch.min and jnp.min both split the
    gradient; the actions' gradients agree either way) and between all experts (torch.max over a dim and
    jnp.argmax both take the first expert)."""
    n, k, a_dim, log_alpha = 96, 3, 2, -0.3
    rng = np.random.default_rng(2)
    logits, mean = rng.normal(size=(n, k)), rng.normal(size=(n, k, a_dim))
    log_std = rng.uniform(-2.0, 0.5, size=(n, k, a_dim))
    obs = rng.normal(size=(n, 2))
    obs[::4, 0] = 0.0  # twin ties
    obs[::8, 1] = 0.0  # with the above: every expert ties, Q = c
    critic = random_critic(rng, a_dim)
    key = jax.random.PRNGKey(5)
    with jax.enable_x64(True):
        alpha = jnp.exp(jnp.asarray(log_alpha))
        actor_params = tuple(jnp.asarray(v) for v in (logits, mean, log_std))
        obs_j, critic_j = jnp.asarray(obs), jax.tree.map(jnp.asarray, critic)

        def loss_fn(actor_params):
            return pmoe_sac.actor_loss(actor_params, Outputs, Critic, critic_j, alpha, obs_j, key, jnp.ones(k) / k)

        (loss, (log_prob, _)), (grad_logits, grad_mean, grad_log_std) = jax.value_and_grad(loss_fn, has_aux=True)(
            actor_params
        )
        target_entropy = maxent.target_entropy(a_dim, pmoe_sac.Config())
        # the α loss sac.temperature_update differentiates, on the log π_k* the actor loss returns
        grad_log_alpha = jax.grad(maxent.temperature_loss)(jnp.asarray(log_alpha), log_prob, target_entropy)
        draw = np.asarray(jax.random.normal(key, mean.shape))  # the draw ours reparameterises with

    def official(epsilon):
        actions, log_probs = official_evaluate(mean, log_std, draw, epsilon)
        q, dq_da = critic_q(critic, obs[:, None, :], actions)
        q_min = np.minimum(q[0], q[1])
        best = q_min.argmax(1)  # torch's max over a dim returns the first maximal index, as argmax
        rows = np.arange(n)
        freq_loss, freq_grad = official_frequency_loss(logits, best)
        a_ = np.exp(log_alpha)
        policy_loss = (a_ * log_probs[rows, best] - q_min[rows, best]).mean() + freq_loss
        # only expert k* gets gradient; d(-min Q)/du through a = tanh(u), the smaller twin (halves on a tie)
        share = np.where(q[0] == q[1], 0.5, 0.0)[None] + np.stack([q[0] < q[1], q[1] < q[0]]).astype(float)
        std = np.exp(log_std)
        sech2 = np.cosh(mean + std * draw) ** -2  # d tanh(u)/du = 1 - a²
        dmin_du = (share[..., None] * dq_da).sum(0) * sech2
        dlogdet_du = 2 * actions * sech2 / (sech2 + epsilon)  # d/du of -log(1 - a² + epsilon)
        mask = np.eye(k)[best][..., None] / n
        g_mean = mask * (a_ * dlogdet_du - dmin_du)
        g_log_std = mask * (a_ * (-1 + dlogdet_du * std * draw) - dmin_du * std * draw)
        g_log_alpha = -(log_probs[rows, best] - a_dim).mean()
        return policy_loss, log_probs[rows, best], freq_grad, g_mean, g_log_std, g_log_alpha, q, best

    policy_loss, best_log_prob, g_logits, g_mean, g_log_std, g_log_alpha, q, best = official(0.0)
    q_min = np.minimum(q[0], q[1])
    assert (q[0] == q[1]).sum() == k * n // 4 and np.all(q_min[::8] == q_min[::8, :1]) and np.all(best[::8] == 0)
    assert len(set(best)) == k
    np.testing.assert_allclose(loss, policy_loss, **TOL)
    np.testing.assert_allclose(log_prob, best_log_prob, **TOL)
    np.testing.assert_allclose(grad_logits, g_logits, **TOL)
    np.testing.assert_allclose(grad_mean, g_mean, **TOL)
    np.testing.assert_allclose(grad_log_std, g_log_std, **TOL)
    np.testing.assert_allclose(grad_log_alpha, g_log_alpha, **TOL)
    # the official epsilon = 1e-6 in the log-det (ours is exact) moves, on these draws: the loss by 1.1e-4,
    # log π_k* by 1.1e-2 at the most (7e-6 median), the gate gradient not at all, the mean and log-std
    # gradients by 1.7e-4 and 4e-4 (of up to 0.05), the log α gradient by 1.5e-4
    for exact, with_eps in zip(official(0.0)[:6], official(OFFICIAL_EPS)[:6]):
        assert np.abs(np.asarray(exact) - np.asarray(with_eps)).max() < 0.05
