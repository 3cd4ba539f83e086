"""DSAC-T against the official code, re-derived in numpy.

The reference is Jingliang-Duan/DSAC-v2, `dsac_v2.py` as it was added in commit c69f7eb (unchanged up to
c5105eb): the paper form, which is our default. (The repository's HEAD has a later Huber / clipped-ratio
critic loss, a different variant.) The policy's log-density is the TanhGaussDistribution of
`utils/act_distribution_cls.py` at the same commit, and the stored reward is `reward_scale * reward`
(`training/off_sampler.py`).

Our functions get random "network outputs" through stand-in modules whose `apply` hands back their
parameters (or a simple function of them and the action), and we take `jax.grad` in float64. The
official losses are linear in the network outputs they do not detach, with coefficients computed from
detached values, so the gradient of the official loss with respect to those outputs is simply those
coefficients: the numpy functions below write them out from the official code.

Random draws: where our code draws noise, the test redraws the same numbers from the same keys and
hands them to the numpy side, so both sides use one set of draws.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np

from pgjax import maxent
from pgjax.agents import dsact

OFFICIAL_EPS = 1e-6  # utils/act_distribution_cls.py: the log-det term is log(1 + EPS - tanh(u)^2)
BIAS = 0.1  # dsac_v2.py's `bias`, our `epsilon`
from official import LOG_2PI, TOL, Outputs  # noqa: E402


class TargetCritic:
    """A stand-in target critic: mean q + g·a', std s. The mean depends on the action, so the test also
    sees which next action reaches the target critics."""

    @staticmethod
    def apply(p, obs, action):
        return p["q"] + (p["g"] * action).sum(-1), p["std"]


class QuadraticCritic:
    """A stand-in critic for the actor loss: Q_j(s, a) = c_j + s_0 (d_j + e_j·a) + g·a + h·a², σ = 1.
    The two critics differ only through s_0, so a state with s_0 = 0 is an exact tie between them."""

    @staticmethod
    def apply(p, obs, action):
        q = (
            p["c"]
            + obs[..., 0] * (p["d"] + (p["e"] * action).sum(-1))
            + (p["g"] * action).sum(-1)
            + (p["h"] * action**2).sum(-1)
        )
        return q, jnp.ones_like(q)


def official_tanh_gauss(mean, std, eps_draw, log_det_eps):
    """TanhGaussDistribution.rsample (act limits ±1): u = μ + σ ε, a = tanh(u),
    log π = Σ log N(u; μ, σ) - Σ log(1 + EPS - tanh(u)²). Returns (u, a, log π)."""
    u = mean + std * eps_draw
    log_normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * LOG_2PI
    # 1 - tanh(u)² written as sech(u)², the same number without float64's cancellation at large |u|
    return u, np.tanh(u), log_normal.sum(-1) - np.log(log_det_eps + np.cosh(u) ** -2).sum(-1)


def official_targets(rew, done, gamma, alpha, q_next, std_next, noise, log_prob_next):
    """__q_evaluate on both target critics (z = mean + clamp(N(0,1), -3, 3)·std), then
    __compute_loss_q / __compute_target_q: Q' = min, z' from critic 1 only where its mean is strictly
    smaller (torch.where(q1_next < q2_next, ...)), both targets r + (1 - done) γ (· - α log π')."""
    z = q_next + np.clip(noise, -3, 3) * std_next
    q_min = np.minimum(q_next[0], q_next[1])
    z_min = np.where(q_next[0] < q_next[1], z[0], z[1])
    target_q = rew + (1 - done) * gamma * (q_min - alpha * log_prob_next)
    target_q_sample = rew + (1 - done) * gamma * (z_min - alpha * log_prob_next)
    return target_q, target_q_sample


def official_critic_loss(mean_std, q, std, target_q, target_q_sample, tau_b):
    """One call of __compute_loss_q for critics j = 1, 2 (q, std: [2, B]) given the shared targets.

    mean_std_j: -1.0 until the first batch sets it to mean(std_j), then (1 - τ_b) mean_std_j + τ_b mean(std_j),
    updated before the loss uses it. Target bound: q + clamp(target_q_sample - q, -3 mean_std_j, 3 mean_std_j).
    Loss_j = (mean_std_j² + bias) · mean(-(target_q - q)/(σ̂² + bias) · q
                                        - ((q - bound)² - σ̂²)/(σ̂³ + bias) · σ),
    σ̂ = clamp(σ, min=0), every factor except the bare q and σ detached. Returns (new mean_std, loss,
    d loss / d q, d loss / d σ), the gradients being those factors times (mean_std² + bias)/B."""
    batch_mean = std.mean(-1)
    mean_std = np.where(mean_std == -1.0, batch_mean, (1 - tau_b) * mean_std + tau_b * batch_mean)
    bound = 3 * mean_std[:, None]
    target_bound = q + np.clip(target_q_sample - q, -bound, bound)
    s = np.maximum(std, 0.0)
    weight = (mean_std**2 + BIAS)[:, None]
    coef_q = -(target_q - q) / (s**2 + BIAS)
    coef_std = -((q - target_bound) ** 2 - s**2) / (s**3 + BIAS)
    loss = (weight[:, 0] * (coef_q * q + coef_std * std).mean(-1)).sum()
    n = q.shape[-1]
    return mean_std, loss, weight * coef_q / n, weight * coef_std / n


def test_critic_targets_match_the_official_twin_selection_sample_clip_and_termination():
    """y_q and y_z of ours (`critic_targets`) equal the official target_q and target_q_sample on random
    target-policy and target-critic outputs, with terminal transitions, standard-normal draws beyond
    ±3 (clamped), and exact ties between the twin target means (the official code then takes critic 2's
    sample)."""
    n, a_dim, gamma, log_alpha, reward_scale = 1024, 2, 0.97, 0.3, 0.5
    rng = np.random.default_rng(0)
    tie = np.arange(n) % 5 == 0
    done = (np.arange(n) % 4 == 0).astype(float)
    raw_reward = rng.normal(size=n) * 2
    mean, log_std = rng.normal(size=(n, a_dim)), rng.uniform(-2.0, 0.5, size=(n, a_dim))
    q_next, g_next = rng.normal(size=(2, n)) * 3, rng.normal(size=(2, n, a_dim))
    q_next[1, tie], g_next[1, tie] = q_next[0, tie], g_next[0, tie]
    std_next = np.log1p(np.exp(rng.normal(size=(2, n))))  # softplus, as the critic head
    key = jax.random.PRNGKey(4)  # its 2048 return-sample draws include 4 above 3 and 4 below -3
    with jax.enable_x64(True):
        learner = types.SimpleNamespace(
            target_actor_params=(jnp.asarray(mean), jnp.asarray(log_std)),
            actor_params=(jnp.asarray(mean + 1.0), jnp.asarray(log_std - 0.3)),  # the online policy must not be used
            target_critic_params={"q": jnp.asarray(q_next), "g": jnp.asarray(g_next), "std": jnp.asarray(std_next)},
            log_alpha=jnp.asarray(log_alpha),
        )
        batch = {"next_obs": jnp.zeros((n, 3)), "reward": jnp.asarray(raw_reward), "terminated": jnp.asarray(done)}
        config = dsact.Config(gamma=gamma, reward_scale=reward_scale)
        y_q, y_z = dsact.critic_targets(Outputs, TargetCritic, learner, batch, key, config)
        # the draws ours makes: key -> (next-action key, return-sample key)
        action_key, noise_key = jax.random.split(key)
        action_draw = np.asarray(jax.random.normal(action_key, (n, a_dim)))
        noise = np.asarray(jax.random.normal(noise_key, (2, n)))
        assert y_q.dtype == jnp.float64
    assert (noise > 3).any() and (noise < -3).any()  # the ±3 clamp is exercised

    def official(log_det_eps):
        _, next_action, log_prob_next = official_tanh_gauss(mean, np.exp(log_std), action_draw, log_det_eps)
        q_bar = q_next + (g_next * next_action).sum(-1)
        # the sampler stores reward_scale * reward, our config multiplies at the update: the same number
        targets = official_targets(
            reward_scale * raw_reward, done, gamma, np.exp(log_alpha), q_bar, std_next, noise, log_prob_next
        )
        return targets, q_bar, q_bar + np.clip(noise, -3, 3) * std_next

    # ours uses the exact log(1 - tanh²u) = 2(log 2 - u - softplus(-2u)); the official adds EPS = 1e-6
    # inside the log, which moves log π' by about 1e-6 / (1 - tanh²u) per dimension
    (target_q, target_q_sample), q_bar, z = official(0.0)
    np.testing.assert_allclose(y_q, target_q, **TOL)
    np.testing.assert_allclose(y_z, target_q_sample, **TOL)
    # with the official EPS both targets move by the same γ α Δlog π'; measured on these draws: 1.2e-2 at
    # the most (a next action saturated near ±1, where 1 - tanh²u is ~1e-4), 4e-6 in the median
    (eps_q, eps_z), _, _ = official(OFFICIAL_EPS)
    assert 0 < np.abs(eps_q - target_q).max() < 0.05 and np.allclose(eps_q - target_q, eps_z - target_q_sample)
    # the branches were taken: terminal rows are just the (scaled) reward; on exact ties of the twin means
    # (not terminal) the two samples differ, so taking critic 1's would show
    np.testing.assert_allclose(np.asarray(y_q)[done == 1], reward_scale * raw_reward[done == 1], **TOL)
    live_tie = tie & (done == 0)
    assert np.array_equal(q_bar[0, tie], q_bar[1, tie]) and np.all(z[0, live_tie] != z[1, live_tie])
    assert (q_bar[0] < q_bar[1]).any() and (q_bar[1] < q_bar[0]).any()


def test_running_b_and_adjusted_critic_gradient_match_the_official_over_three_batches():
    """Three consecutive batches through ours (`critic_loss`, hence `running_std` and
    `adjusted_critic_surrogate`): b starts from the sentinel -1, becomes the first batch's mean σ_j, then
    moves by τ_b; the loss value and jax.grad with respect to both critics' Q and σ outputs equal the
    official loss and its gradient, with targets beyond the ±3b bound on both sides (clipped) and tiny σ
    (where the bias keeps the denominators finite)."""
    n, tau_b = 256, 0.05  # a larger τ_b than the default 0.005, so the averaging shows in b
    rng = np.random.default_rng(1)
    config = dsact.Config(tau_b=tau_b, epsilon=BIAS)
    mean_std = np.array(
        [-1.0, -1.0]
    )  # the official sentinel, tested with `== -1.0` (ours: b < 0; b is otherwise a mean of σ > 0)
    with jax.enable_x64(True):
        b = -jnp.ones(2, jnp.float64)
        grad_fn = jax.grad(dsact.critic_loss, has_aux=True)
        for step in range(3):
            q = rng.normal(size=(2, n)) * 4
            std = np.log1p(np.exp(rng.normal(size=(2, n)) * 2))
            std[:, :8] = rng.uniform(1e-4, 1e-2, size=(2, 8))
            y_q = rng.normal(size=n) * 4
            y_z = q[0] + rng.normal(size=n) * 3 * std.mean()  # some within the bound, some beyond it
            y_z[:20] += 50.0
            y_z[20:40] -= 50.0
            params = (jnp.asarray(q), jnp.asarray(std))
            batch = {"obs": jnp.zeros((n, 3)), "action": jnp.zeros((n, 2))}
            loss, (b_new, _, _) = dsact.critic_loss(
                params, Outputs, batch, jnp.asarray(y_q), jnp.asarray(y_z), b, config
            )
            (grad_q, grad_std), _ = grad_fn(params, Outputs, batch, jnp.asarray(y_q), jnp.asarray(y_z), b, config)

            mean_std, official_loss, official_grad_q, official_grad_std = official_critic_loss(
                mean_std, q, std, y_q, y_z, tau_b
            )
            np.testing.assert_allclose(b_new, mean_std, **TOL)
            np.testing.assert_allclose(loss, official_loss, **TOL)
            np.testing.assert_allclose(grad_q, official_grad_q, **TOL)
            np.testing.assert_allclose(grad_std, official_grad_std, **TOL)
            beyond = np.abs(y_z - q) > 3 * mean_std[:, None]
            assert beyond.sum() > 40 and (~beyond).sum() > 40  # both sides of the clip
            if step == 0:
                np.testing.assert_allclose(b_new, std.mean(-1), **TOL)  # the sentinel gave way to the batch mean
            b = b_new


def test_actor_and_temperature_gradients_match_the_official():
    """The actor loss mean(α log π(ã|s) - min(Q_1, Q_2)(s, ã)) and the α loss
    -log α · mean(log π + H̄) (H̄ = -|A|), with one shared reparameterised sample, as the official
    __compute_loss_policy and __compute_loss_alpha: their values and jax.grad of ours with respect to the
    policy outputs (mean, clamped log-std), each critic's output (through c_j, with exact twin ties, where
    torch.min and jnp.min both split the gradient in halves), and log α."""
    n, a_dim, log_alpha = 128, 3, 0.4
    rng = np.random.default_rng(2)
    mean, log_std = rng.normal(size=(n, a_dim)), rng.uniform(-2.0, 0.5, size=(n, a_dim))
    obs = rng.normal(size=(n, 2))
    obs[::4, 0] = 0.0  # twin ties
    critic = {
        "c": np.full(2, 0.3),
        "d": rng.normal(size=2),
        "e": rng.normal(size=(2, a_dim)),
        "g": np.repeat(rng.normal(size=(1, a_dim)), 2, 0),
        "h": np.repeat(rng.normal(size=(1, a_dim)), 2, 0),
    }
    key = jax.random.PRNGKey(3)
    with jax.enable_x64(True):
        alpha = jnp.exp(jnp.asarray(log_alpha))
        critic_params = jax.tree.map(jnp.asarray, critic)
        actor_params = (jnp.asarray(mean), jnp.asarray(log_std))

        def loss_fn(actor_params, critic_params):
            return dsact.actor_loss(actor_params, Outputs, QuadraticCritic, critic_params, alpha, jnp.asarray(obs), key)

        (loss, log_prob), (actor_grads, critic_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            actor_params, critic_params
        )
        target_entropy = maxent.target_entropy(a_dim, dsact.Config())
        alpha_grads = jax.grad(dsact.temperature_loss, argnums=(0, 1))(jnp.asarray(log_alpha), log_prob, target_entropy)
        draw = np.asarray(jax.random.normal(key, (n, a_dim)))  # the draw ours reparameterises with

    def official(log_det_eps):
        std = np.exp(log_std)
        u, act, new_log_prob = official_tanh_gauss(mean, std, draw, log_det_eps)
        q = np.stack(
            [
                critic["c"][j]
                + obs[:, 0] * (critic["d"][j] + act @ critic["e"][j])
                + act @ critic["g"][j]
                + act**2 @ critic["h"][j]
                for j in range(2)
            ]
        )
        loss_policy = (np.exp(log_alpha) * new_log_prob - q.min(0)).mean()
        # torch.min(q1, q2) passes the gradient to the smaller one, half to each on a tie
        share = np.where(q[0] == q[1], 0.5, 0.0)[None] + np.stack([q[0] < q[1], q[1] < q[0]]).astype(float)
        dq_da = np.stack([obs[:, :1] * critic["e"][j] + critic["g"][j] + 2 * critic["h"][j] * act for j in range(2)])
        sech2 = np.cosh(u) ** -2  # d tanh(u)/du = 1 - tanh(u)²
        dmin_du = (share[..., None] * dq_da).sum(0) * sech2
        dlogdet_du = 2 * act * sech2 / (log_det_eps + sech2)  # d/du of -log(1 + EPS - tanh²u)
        # ∂/∂μ: u = μ + σε and log N(u; μ, σ) does not depend on μ at fixed ε; ∂/∂log σ: du = σε, log N gives -1
        grad_mean = (np.exp(log_alpha) * dlogdet_du - dmin_du) / n
        grad_log_std = (np.exp(log_alpha) * (-1 + dlogdet_du * std * draw) - dmin_du * std * draw) / n
        grad_c = -share.sum(-1) / n
        grad_log_alpha = -(new_log_prob + -a_dim).mean()  # loss_alpha = -log α · (log π.detach() + H̄).mean()
        return loss_policy, new_log_prob, grad_mean, grad_log_std, grad_c, grad_log_alpha, q

    loss_policy, new_log_prob, grad_mean, grad_log_std, grad_c, grad_log_alpha, q = official(0.0)
    assert (q[0] == q[1]).sum() == n // 4 and (q[0] < q[1]).any() and (q[1] < q[0]).any()
    np.testing.assert_allclose(loss, loss_policy, **TOL)
    np.testing.assert_allclose(log_prob, new_log_prob, **TOL)
    np.testing.assert_allclose(actor_grads[0], grad_mean, **TOL)
    np.testing.assert_allclose(actor_grads[1], grad_log_std, **TOL)
    np.testing.assert_allclose(critic_grads["c"], grad_c, **TOL)
    np.testing.assert_allclose(alpha_grads[0], grad_log_alpha, **TOL)
    np.testing.assert_array_equal(alpha_grads[1], 0.0)  # log π is detached in the α loss
    # the official EPS = 1e-6 in the log-det (ours is exact) moves, on these draws: the loss by 5.7e-5,
    # log π by 9e-4 at the most (1e-5 median), the mean gradient by 2.1e-5 (of up to 0.046) and the
    # log-std gradient by 6.9e-5 (of up to 0.068)
    for exact, with_eps in zip(official(0.0)[:4], official(OFFICIAL_EPS)[:4]):
        assert np.abs(exact - with_eps).max() < 1e-3


# ---------------------------------------------------------------- the official run beside ours (pgjax compare-official)


def test_compare_official_reads_the_authors_run_and_finds_where_each_run_first_reaches_minus_250(tmp_path):
    import shutil
    from pathlib import Path

    from pgjax.reference_run import OFFICIAL_CURVE, comparison, first_reach, markdown

    assert first_reach([(0, -900.0), (10, -250.0), (20, -300.0)]) == 10
    assert first_reach([(0, -900.0), (10, -251.0)]) is None
    committed = Path(__file__).parents[1] / "results" / "parity" / "dsact_pendulum"
    (tmp_path / "official").mkdir()
    shutil.copy(committed / OFFICIAL_CURVE, tmp_path / OFFICIAL_CURVE)
    rows = [
        "agent,env,backend,config_id,seed,env_steps,wall_time_s,eval_return_mean,eval_return_std,"
        "train_return_mean,status"
    ]
    for seed, crossing in ((0, 100_000), (1, 150_000)):
        for steps in range(0, 250_001, 50_000):
            rows.append(
                f"dsact,gymnax/Pendulum-v1,gymnax,dsact-x,{seed},{steps},1.0,"
                f"{-150.0 if steps >= crossing else -1200.0},1.0,nan,ok"
            )
    (tmp_path / "curves.csv").write_text("\n".join(rows) + "\n")
    result = comparison(tmp_path)
    assert result["official"]["first_reaches_threshold_at"] == 132_020  # the authors' curve, 2,000 samples apart
    assert result["official"]["samples"] == 248_020
    assert result["ours"]["first_reaches_threshold_at"] == {0: 100_000, 1: 150_000}
    assert result["ours"]["median_first_reach"] == 125_000 and result["ours"]["final_return_mean"] == -150.0
    assert "132,020" in markdown(result) and "100,000, 150,000" in markdown(result)
