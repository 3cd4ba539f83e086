"""DSAC-T (docs/agents.md): the adjusted critic gradient against its closed form, the
running std b and the clip boundary, the delayed actor/α/target updates, the target policy, and
truncation vs termination."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import tiny_trainer

from pgjax import maxent
from pgjax.agents import dsact
from pgjax.distributions import tanh_gaussian_sample
from pgjax.networks import apply_ensemble


def random_critic_inputs(seed, n=64):
    rng = np.random.default_rng(seed)
    q, y_q, y_z = (jnp.asarray(rng.normal(size=n) * 3, jnp.float32) for _ in range(3))
    std = jnp.asarray(rng.uniform(0.1, 2.0, size=n), jnp.float32)
    return q, std, y_q, y_z


def test_adjusted_critic_gradient_equals_closed_form_for_mean_and_std_heads():
    """∂L/∂Q_i = -(b²+ε)/B · (y_q - Q_i)/(σ_i²+ε), ∂L/∂σ_i = -(b²+ε)/B · ((Q_i - ŷ_i)² - σ_i²)/(σ_i³+ε)."""
    q, std, y_q, y_z = random_critic_inputs(0)
    b, eps, n = 0.7, 0.1, q.shape[0]
    grad_q, grad_std = jax.grad(dsact.adjusted_critic_surrogate, argnums=(0, 1))(q, std, y_q, y_z, b, eps)
    q_, s_, yq_, yz_ = (np.asarray(x, np.float64) for x in (q, std, y_q, y_z))
    y_hat = q_ + np.clip(yz_ - q_, -3 * b, 3 * b)
    omega = b**2 + eps
    np.testing.assert_allclose(grad_q, -omega / n * (yq_ - q_) / (s_**2 + eps), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad_std, -omega / n * ((q_ - y_hat) ** 2 - s_**2) / (s_**3 + eps), rtol=1e-5, atol=1e-7)


def test_critic_loss_sums_both_critics_with_the_updated_running_std():
    """On the first batch b_j is that batch's mean σ_j, and the loss already uses it (not the sentinel)."""
    trainer, config, learner, batch = init_learner()
    _, critic = dsact.networks(trainer.env, config)
    q, std = apply_ensemble(critic, learner.critic_params, batch["obs"], batch["action"])
    y_q, y_z = random_critic_inputs(1, n=q.shape[1])[2:]
    loss, (b, _, _) = dsact.critic_loss(learner.critic_params, critic, batch, y_q, y_z, learner.b, config)
    np.testing.assert_allclose(b, std.mean(1), rtol=1e-6)
    expected = sum(dsact.adjusted_critic_surrogate(q[j], std[j], y_q, y_z, b[j], config.epsilon) for j in range(2))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_running_std_starts_at_first_batch_mean_then_moves_by_tau_b_and_sets_the_clip_boundary():
    std = jnp.asarray([[1.0, 3.0], [0.5, 0.5]])
    b = dsact.running_std(-jnp.ones(2), std, 0.005)
    np.testing.assert_allclose(b, [2.0, 0.5])
    b2 = dsact.running_std(b, jnp.asarray([[4.0, 4.0], [1.5, 1.5]]), 0.005)
    np.testing.assert_allclose(b2, [0.995 * 2.0 + 0.005 * 4.0, 0.995 * 0.5 + 0.005 * 1.5], rtol=1e-6)
    # the sample target is clipped to Q ± 3b: beyond it, y_z no longer changes the std gradient
    q, s = jnp.zeros(1), jnp.ones(1)
    grad_std = lambda y_z, b: jax.grad(dsact.adjusted_critic_surrogate, argnums=1)(q, s, q, jnp.asarray([y_z]), b, 0.1)
    np.testing.assert_allclose(grad_std(100.0, 0.5), grad_std(1.5, 0.5))  # boundary 3b = 1.5
    assert not np.allclose(grad_std(1.4, 0.5), grad_std(1.5, 0.5))
    np.testing.assert_allclose(grad_std(-100.0, 0.5), grad_std(-1.5, 0.5))


def init_learner(**overrides):
    trainer, config = tiny_trainer("dsact", **overrides)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state
    batch = state.buffer.experience
    batch = jax.tree.map(lambda x: x[0, :16], batch)
    return trainer, config, state.learner, batch


def changed(a, b):
    return not all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


def test_delayed_updates_fall_on_gradient_steps_one_three_five_as_the_official_trainer():
    """The official trainer checks `iteration % delay_update == 0` with iteration counted from 0 before it
    is incremented: the actor, α and the targets step at gradient steps 1, 3, 5, ... and their Adam states
    stand still in between."""
    trainer, config, learner, batch = init_learner(delay_update=2)
    # a target policy apart from the online one, so that averaging it would show
    learner = learner.replace(target_actor_params=jax.tree.map(lambda x: x + 0.5, learner.actor_params))
    step = jax.jit(lambda l, k: dsact.gradient_step(l, batch, k, trainer.env, config))
    delayed = ("actor_params", "log_alpha", "target_critic_params", "target_actor_params", "actor_opt", "alpha_opt")
    previous = learner
    for n, key in enumerate(jax.random.split(jax.random.PRNGKey(1), 4), start=1):
        new, _ = step(previous, key)
        assert changed(new.critic_params, previous.critic_params)
        for field in delayed:
            assert changed(getattr(new, field), getattr(previous, field)) == (n % 2 == 1), (n, field)
        assert int(new.actor_opt[0].count) == int(new.alpha_opt[0].count) == (n + 1) // 2
        assert int(new.critic_opt[0].count) == n
        previous = new


def test_actor_and_temperature_step_with_the_critics_and_alpha_from_before_this_steps_update():
    """Step 8: every gradient of one step is taken at the step's starting parameters, then all step."""
    trainer, config, learner, batch = init_learner()
    actor, critic = dsact.networks(trainer.env, config)
    key = jax.random.PRNGKey(6)
    new, metrics = jax.jit(lambda l: dsact.gradient_step(l, batch, key, trainer.env, config))(learner)
    assert changed(new.critic_params, learner.critic_params)
    actor_key = jax.random.split(key)[1]
    # the loss is the sharper witness: Adam's first step is close to lr · sign(gradient) whichever critics
    loss_with = lambda critic_params, log_alpha: dsact.actor_loss(
        learner.actor_params, actor, critic, critic_params, jnp.exp(log_alpha), batch["obs"], actor_key
    )[0]
    np.testing.assert_allclose(metrics["actor_loss"], loss_with(learner.critic_params, learner.log_alpha), rtol=1e-6)
    assert not np.isclose(
        float(loss_with(new.critic_params, learner.log_alpha)), float(metrics["actor_loss"]), rtol=1e-5, atol=0
    )
    actor_opt, _, alpha_opt = maxent.optimizers(config)

    def stepped(critic_params, log_alpha):
        grads, log_prob = jax.grad(dsact.actor_loss, has_aux=True)(
            learner.actor_params, actor, critic, critic_params, jnp.exp(log_alpha), batch["obs"], actor_key
        )
        updates, _ = actor_opt.update(grads, learner.actor_opt)
        alpha_grad = jax.grad(dsact.temperature_loss)(
            learner.log_alpha, log_prob, maxent.target_entropy(trainer.env.action_size, config)
        )
        alpha_update, _ = alpha_opt.update(alpha_grad, learner.alpha_opt)
        return optax.apply_updates(learner.actor_params, updates), optax.apply_updates(learner.log_alpha, alpha_update)

    before_actor, before_alpha = stepped(learner.critic_params, learner.log_alpha)
    for got, want in zip(jax.tree.leaves(new.actor_params), jax.tree.leaves(before_actor)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(new.log_alpha, before_alpha, rtol=1e-6)
    after_actor, _ = stepped(new.critic_params, new.log_alpha)  # what the post-update critics would give
    assert changed(after_actor, before_actor)


def test_default_activation_is_the_exact_erf_gelu_of_the_official_torch_networks():
    """torch's nn.GELU is x Φ(x) with the exact normal CDF; jax.nn.gelu defaults to a tanh approximation
    that differs by up to ~5e-4."""
    from math import erf, sqrt

    from pgjax.networks import ACTIVATIONS

    x = np.linspace(-4.0, 4.0, 161)
    exact = np.array([0.5 * v * (1.0 + erf(v / sqrt(2.0))) for v in x])
    np.testing.assert_allclose(ACTIVATIONS[dsact.Config().activation](jnp.asarray(x, jnp.float32)), exact, atol=2e-6)
    assert np.abs(np.asarray(ACTIVATIONS["gelu_tanh"](jnp.asarray(x, jnp.float32))) - exact).max() > 1e-4


def test_next_action_comes_from_the_target_policy_and_termination_stops_the_bootstrap():
    trainer, config, learner, batch = init_learner(reward_scale=0.5)
    actor, critic = dsact.networks(trainer.env, config)
    # a target policy far from the online one
    learner = learner.replace(target_actor_params=jax.tree.map(lambda x: x + 0.5, learner.actor_params))
    batch = {**batch, "terminated": jnp.asarray([0.0] * 8 + [1.0] * 8)}
    key = jax.random.PRNGKey(3)
    y_q, y_z = dsact.critic_targets(actor, critic, learner, batch, key, config)

    next_key, noise_key = jax.random.split(key)
    alpha = jnp.exp(learner.log_alpha)

    def expected(policy_params):
        mean, log_std = actor.apply(policy_params, batch["next_obs"])
        a, logp = tanh_gaussian_sample(next_key, mean, log_std)
        q_bar, _ = apply_ensemble(critic, learner.target_critic_params, batch["next_obs"], a)
        return 0.5 * batch["reward"] + config.gamma * (1 - batch["terminated"]) * (q_bar.min(0) - alpha * logp)

    np.testing.assert_allclose(y_q, expected(learner.target_actor_params), rtol=1e-5, atol=1e-5)
    assert not np.allclose(y_q[:8], expected(learner.actor_params)[:8])
    np.testing.assert_allclose(y_q[8:], 0.5 * batch["reward"][8:], rtol=1e-6)  # terminated: no bootstrap
    np.testing.assert_allclose(y_z[8:], 0.5 * batch["reward"][8:], rtol=1e-6)
    # rows that did not terminate (truncated ones included) bootstrap from next_obs, which the
    # replay holds as the pre-reset observation (tests/test_sac.py shows that for the shared loop)
    moved = {**batch, "next_obs": batch["next_obs"] + 1.0}
    y_moved, _ = dsact.critic_targets(actor, critic, learner, moved, key, config)
    assert not np.allclose(y_moved[:8], y_q[:8]) and np.allclose(y_moved[8:], y_q[8:])


def test_twin_value_distribution_takes_the_sample_of_the_critic_with_the_smaller_mean():
    from pgjax.networks import init_ensemble

    trainer, config, learner, batch = init_learner()
    actor, critic = dsact.networks(trainer.env, config)
    key = jax.random.PRNGKey(4)
    next_key, noise_key = jax.random.split(key)
    mean, log_std = actor.apply(learner.target_actor_params, batch["next_obs"])
    a, logp = tanh_gaussian_sample(next_key, mean, log_std)
    for seed in range(50):  # target critics for which each critic has the smaller mean somewhere in the batch
        targets = init_ensemble(critic, jax.random.PRNGKey(seed), 2, batch["next_obs"][:1], a[:1])
        q_bar, std_bar = apply_ensemble(critic, targets, batch["next_obs"], a)
        pick = jnp.argmin(q_bar, axis=0)
        if 0 < int(pick.sum()) < pick.shape[0]:
            break
    assert 0 < int(pick.sum()) < pick.shape[0]
    learner = learner.replace(target_critic_params=targets)
    _, y_z = dsact.critic_targets(actor, critic, learner, batch, key, config)
    z = q_bar + jnp.clip(jax.random.normal(noise_key, q_bar.shape), -3, 3) * std_bar
    z_next = jnp.take_along_axis(z, pick[None], 0)[0]
    alpha = jnp.exp(learner.log_alpha)
    expected = batch["reward"] + config.gamma * (1 - batch["terminated"]) * (z_next - alpha * logp)
    np.testing.assert_allclose(y_z, expected, rtol=1e-5, atol=1e-5)


def test_warmup_comes_from_the_initial_policy_by_default():
    """The official trainer fills DSAC-T's warm-up with the untrained policy, not uniform noise."""
    from pgjax import offpolicy

    assert dsact.Config().random_warmup is False
    trainer, config = tiny_trainer("dsact")
    constant = lambda learner, obs, key, config: jnp.full((obs.shape[0], trainer.env.action_size), 0.25)
    for random_warmup in (False, True):
        c = config.replace(random_warmup=random_warmup)
        state = jax.jit(lambda k: offpolicy.init(k, trainer.env, c, dsact.init_learner, constant))(
            jax.random.PRNGKey(0)
        )
        actions = np.asarray(state.buffer.experience["action"])[0, : config.warmup_steps]
        assert np.all(actions == 0.25) != random_warmup


def test_a_delayed_step_averages_both_targets_toward_the_updated_networks_and_keeps_b():
    """Step 10: θ̄ ← (1 − τ)θ̄ + τθ for the critics and for the policy, toward the parameters this step
    produced; the actor's loss uses the online critics, not the targets; b is kept for the next step."""
    trainer, config, learner, batch = init_learner(delay_update=2)
    actor, critic = dsact.networks(trainer.env, config)
    # targets apart from the online networks, so that which one is used, and how it moves, would show
    learner = learner.replace(
        target_actor_params=jax.tree.map(lambda x: x + 0.5, learner.actor_params),
        target_critic_params=jax.tree.map(lambda x: x + 0.3, learner.critic_params),
    )
    key = jax.random.PRNGKey(3)
    new, metrics = jax.jit(lambda l: dsact.gradient_step(l, batch, key, trainer.env, config))(learner)
    tau = config.tau
    for name, online in (("target_critic_params", new.critic_params), ("target_actor_params", new.actor_params)):
        expected = jax.tree.map(lambda t, o: (1 - tau) * t + tau * o, getattr(learner, name), online)
        for got, want in zip(jax.tree.leaves(getattr(new, name)), jax.tree.leaves(expected)):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    online_loss = dsact.actor_loss(
        learner.actor_params,
        actor,
        critic,
        learner.critic_params,
        jnp.exp(learner.log_alpha),
        batch["obs"],
        jax.random.split(key)[1],
    )[0]
    np.testing.assert_allclose(metrics["actor_loss"], online_loss, rtol=1e-6)
    _, std = apply_ensemble(critic, learner.critic_params, batch["obs"], batch["action"])
    np.testing.assert_allclose(new.b, std.mean(1), rtol=1e-6)  # the first batch's mean σ, carried on
    second, _ = jax.jit(lambda l: dsact.gradient_step(l, batch, key, trainer.env, config))(new)
    _, std2 = apply_ensemble(critic, new.critic_params, batch["obs"], batch["action"])
    np.testing.assert_allclose(second.b, (1 - config.tau_b) * new.b + config.tau_b * std2.mean(1), rtol=1e-5)


def test_defaults_are_the_configuration_of_the_authors_committed_run():
    """Against the official run's config.json (copied into results/parity/dsact_pendulum/official): the
    networks, learning rates, τ, the delay, the batch, the warm-up, 20 env steps per gradient step, the
    policy's log-std ceiling; α₀ = e because the official code starts log α at 1 (its "alpha" setting is
    not read when auto_alpha is on); b's rate τ_b = τ and ε = 0.1 are the official code's constants."""
    import json
    from pathlib import Path

    from pgjax.envs import make

    official = json.loads(
        (Path(__file__).parents[1] / "results/parity/dsact_pendulum/official/config.json").read_text()
    )
    c = dsact.Config()
    assert list(c.hidden_sizes) == official["policy_hidden_sizes"] == official["value_hidden_sizes"]
    assert c.activation == official["policy_hidden_activation"] == official["value_hidden_activation"] == "gelu"
    assert (c.actor_lr, c.critic_lr, c.alpha_lr) == (
        official["policy_learning_rate"],
        official["value_learning_rate"],
        official["alpha_learning_rate"],
    )
    assert (c.gamma, c.tau, c.delay_update, c.batch_size) == (
        official["gamma"],
        official["tau"],
        official["delay_update"],
        official["replay_batch_size"],
    )
    assert (c.num_envs, c.gradient_steps, c.warmup_steps) == (
        official["batch_size_per_sampler"],
        1,
        official["buffer_warm_size"],
    )
    assert (math.log(c.init_alpha), c.tau_b, c.epsilon) == (1.0, c.tau, 0.1)  # the official log α₀ = 1
    actor, _ = dsact.networks(make("gymnax/Pendulum-v1"), c)
    assert actor.log_std_max == official["policy_max_log_std"]
    learner = dsact.init_learner(jax.random.PRNGKey(0), make("gymnax/Pendulum-v1"), c.replace(init_alpha=0.3))
    np.testing.assert_allclose(learner.log_alpha, np.log(0.3), rtol=1e-6)


def test_the_temperature_gradient_uses_the_log_density_of_the_actor_losss_own_sample():
    """Step 9 reuses the actor step's ã: Adam's first moment after one step holds (1 - β₁)·g with
    g = -(mean log π(ã|s) + H̄), log π from the same sample the actor loss (and the entropy metric) used."""
    trainer, config, learner, batch = init_learner()
    new, metrics = jax.jit(lambda l: dsact.gradient_step(l, batch, jax.random.PRNGKey(4), trainer.env, config))(learner)
    target_entropy = maxent.target_entropy(trainer.env.action_size, config)
    grad = -(-float(metrics["entropy"]) + target_entropy)
    np.testing.assert_allclose(new.alpha_opt[0].mu, 0.1 * grad, rtol=1e-5)


def test_each_critics_std_head_is_the_softplus_of_its_raw_output():
    from pgjax.networks import MLP

    trainer, config, learner, batch = init_learner()
    critic = dsact.networks(trainer.env, config)[1]
    one = jax.tree.map(lambda x: x[0], learner.critic_params)
    mean, std = critic.apply(one, batch["obs"], batch["action"])
    raw = MLP(config.hidden_sizes, 2, config.activation).apply(
        {"params": one["params"]["MLP_0"]}, jnp.concatenate([batch["obs"], batch["action"]], -1)
    )
    np.testing.assert_allclose(mean, raw[:, 0], rtol=1e-6)
    np.testing.assert_allclose(std, jax.nn.softplus(raw[:, 1]), rtol=1e-6)
    assert float(raw[:, 1].min()) < 0  # where softplus and exp or abs would differ
