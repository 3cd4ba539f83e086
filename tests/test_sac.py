import jax
import jax.numpy as jnp
import numpy as np
from helpers import tiny_trainer

from pgjax import maxent
from pgjax.agents import sac
from pgjax.distributions import tanh_gaussian_sample
from pgjax.networks import MLP, apply_ensemble


def test_critic_target_bootstraps_through_truncation_not_termination():
    trainer, config = tiny_trainer("sac")
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    actor, critic = sac.networks(trainer.env, config)
    rng = np.random.default_rng(0)
    n = 4
    batch = {
        "obs": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
        "action": jnp.zeros((n, 1)),
        "reward": jnp.asarray([1.0, -2.0, 0.5, 3.0]),
        # rows 0, 1: a truncated step (not terminated; next_obs is the real final observation);
        # rows 2, 3: a terminated step
        "terminated": jnp.asarray([0.0, 0.0, 1.0, 1.0]),
        "next_obs": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
    }
    alpha, key = 0.3, jax.random.PRNGKey(1)
    y = sac.critic_target(actor, critic, state.actor_params, state.target_params, alpha, batch, key, config)

    mean, log_std = actor.apply(state.actor_params, batch["next_obs"])
    a_next, logp_next = tanh_gaussian_sample(key, mean, log_std)
    q_next = apply_ensemble(critic, state.target_params, batch["next_obs"], a_next).min(0)
    bootstrap = batch["reward"] + config.gamma * (q_next - alpha * logp_next)
    np.testing.assert_allclose(y[:2], bootstrap[:2], rtol=1e-5)
    np.testing.assert_allclose(y[2:], batch["reward"][2:], rtol=1e-6)
    # and the bootstrap really depends on next_obs (so storing the reset obs would be wrong)
    moved = {**batch, "next_obs": batch["next_obs"] + 1.0}
    y_moved = sac.critic_target(actor, critic, state.actor_params, state.target_params, alpha, moved, key, config)
    assert not np.allclose(y_moved[:2], y[:2]) and np.allclose(y_moved[2:], y[2:])


def test_replay_holds_pre_reset_next_obs_at_truncation():
    """Run SAC through a time limit and find the truncated transition in its buffer."""
    trainer, config = tiny_trainer("sac", total_steps=440, warmup_steps=400)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state
    items = jax.tree.map(lambda x: np.asarray(x)[0, :400], state.buffer.experience)
    # warm-up: 2 envs x 200 steps = exactly one Pendulum episode each, so the last item of each env
    # is its time-limit step; its next_obs must not be the obs the next episode starts from
    last = items["next_obs"][-2:]
    assert not np.any(items["terminated"])
    fresh = np.asarray(state.env_state.obs)
    assert not np.allclose(last, fresh)
    np.testing.assert_allclose(
        items["next_obs"][:-2], np.asarray([items["obs"][i + 2] for i in range(398)]), rtol=1e-6
    )  # next_obs == following obs elsewhere


def test_temperature_moves_toward_target_entropy():
    """L(log α) = -log α (log π + H̄), H̄ = -|A|: α falls when entropy exceeds -|A|, rises below it."""
    target = -1.0  # one action dimension
    high_entropy = jnp.full((8,), -3.0)  # entropy 3 > -1
    low_entropy = jnp.full((8,), 2.0)  # entropy -2 < -1
    grad = jax.grad(maxent.temperature_loss)
    np.testing.assert_allclose(grad(0.0, high_entropy, target), 4.0)  # descent lowers log α
    np.testing.assert_allclose(grad(0.0, low_entropy, target), -1.0)  # descent raises log α


def sac_parts():
    trainer, config = tiny_trainer("sac")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    actor, critic = sac.networks(trainer.env, config)
    return trainer.env, config, learner, actor, critic


def random_batch(env, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "obs": jnp.asarray(rng.normal(size=(n, env.obs_size)), jnp.float32),
        "action": jnp.asarray(rng.uniform(-1, 1, size=(n, env.action_size)), jnp.float32),
        "reward": jnp.asarray(rng.normal(size=n), jnp.float32),
        "terminated": jnp.asarray(rng.uniform(size=n) < 0.3, jnp.float32),
        "next_obs": jnp.asarray(rng.normal(size=(n, env.obs_size)), jnp.float32),
    }


def test_critic_loss_is_half_the_mean_squared_error_summed_over_the_twins():
    """L_Q = Σ_j 0.5·mean((Q_j(s, a) - y)²)."""
    env, config, learner, actor, critic = sac_parts()
    batch = random_batch(env)
    y = jnp.linspace(-2.0, 3.0, 8)
    q = np.asarray(apply_ensemble(critic, learner.critic_params, batch["obs"], batch["action"]))
    loss, _ = sac.critic_loss(learner.critic_params, critic, batch, y)
    np.testing.assert_allclose(loss, 0.5 * ((q[0] - y) ** 2).mean() + 0.5 * ((q[1] - y) ** 2).mean(), rtol=1e-5)


def test_critic_target_multiplies_the_reward_by_reward_scale():
    env, config, learner, actor, critic = sac_parts()
    batch = {**random_batch(env), "terminated": jnp.ones(8)}
    y = sac.critic_target(
        actor,
        critic,
        learner.actor_params,
        learner.target_params,
        0.3,
        batch,
        jax.random.PRNGKey(1),
        config.replace(reward_scale=2.5),
    )
    np.testing.assert_allclose(y, 2.5 * batch["reward"], rtol=1e-6)


def test_actor_loss_is_alpha_log_pi_minus_the_smaller_twin_at_the_reparameterised_action():
    """L_π = mean(α log π(ã|s) - min_j Q_j(s, ã)) with ã = tanh(μ + σε) from the same key."""
    env, config, learner, actor, critic = sac_parts()
    obs, key, alpha = random_batch(env)["obs"], jax.random.PRNGKey(3), 0.7
    loss, (log_prob, _) = sac.actor_loss(learner.actor_params, actor, critic, learner.critic_params, alpha, obs, key)
    mean, log_std = actor.apply(learner.actor_params, obs)
    action, expected_log_prob = tanh_gaussian_sample(key, mean, log_std)
    q = np.asarray(apply_ensemble(critic, learner.critic_params, obs, action))
    np.testing.assert_allclose(log_prob, expected_log_prob, rtol=1e-6)
    np.testing.assert_allclose(loss, np.mean(alpha * np.asarray(expected_log_prob) - q.min(0)), rtol=1e-5)
    assert not np.allclose(q.min(0), q.max(0), atol=1e-3)  # the twins differ, so min is told from max


def test_gradient_step_polyak_averages_the_targets_toward_the_new_critics_and_aims_at_minus_action_size(monkeypatch):
    """θ̄ ← τθ + (1-τ)θ̄ with θ the critics after this step's update, and the temperature loss is given
    the target entropy H̄ = -|A| (-1 on Pendulum, whose observation has 3 dimensions)."""
    env, config, learner, actor, critic = sac_parts()
    config = config.replace(critic_lr=0.1, tau=0.3)  # a visible critic step and a τ far from 1/2
    leaves, tree = jax.tree.flatten(learner.target_params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    learner = learner.replace(
        target_params=jax.tree.unflatten(tree, [x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    )  # targets apart from critics
    seen, temperature_loss = [], maxent.temperature_loss

    def spy(log_alpha, log_prob, target_entropy):
        seen.append(target_entropy)
        return temperature_loss(log_alpha, log_prob, target_entropy)

    monkeypatch.setattr(maxent, "temperature_loss", spy)
    new, _ = sac.gradient_step(learner, random_batch(env), jax.random.PRNGKey(2), env, config)
    assert seen == [-1.0]
    expected = jax.tree.map(
        lambda t, o: (1 - config.tau) * t + config.tau * o, learner.target_params, new.critic_params
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_params, expected)
    assert maxent.target_entropy(6, config) == -6.0


def test_actor_log_std_is_clamped_to_minus_20_and_2():
    """Weights scaled up 1000-fold drive the raw log-std far past both ends; the actor clamps it."""
    env, config, learner, actor, critic = sac_parts()
    big = jax.tree.map(lambda x: 1000.0 * x, learner.actor_params)
    obs = jnp.asarray(np.random.default_rng(1).normal(size=(64, env.obs_size)) * 5, jnp.float32)
    _, log_std = actor.apply(big, obs)
    trunk = MLP(actor.hidden_sizes, 2 * env.action_size, actor.activation)
    _, raw_log_std = jnp.split(trunk.apply({"params": big["params"]["MLP_0"]}, obs), 2, axis=-1)
    assert float(raw_log_std.max()) > 2.0 and float(raw_log_std.min()) < -20.0  # the clamp is needed
    assert float(log_std.max()) == 2.0 and float(log_std.min()) == -20.0


def test_replayed_batches_are_normalised_with_the_statistics_the_policy_acted_on():
    """With observation normalisation on, each sampled transition's obs and next_obs are normalised
    with the state's statistics (before this iteration's update), and both belong to one stored
    transition (next_obs the pre-reset one)."""
    from pgjax import offpolicy
    from pgjax.normalize import RunningStats

    trainer, config = tiny_trainer("sac", normalize_observations=True)
    env = trainer.env
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state
    prior = RunningStats(jnp.array([0.1, -0.2, 0.5]), jnp.array([0.5, 2.0, 4.0]), jnp.asarray(10.0))
    state = state.replace(obs_stats=prior)

    def capture(learner, batch, key, env, config):
        return learner, batch

    new, batch = jax.jit(lambda s: offpolicy.iteration(s, env, config, sac.explore, capture))(state)
    sd, mean = np.sqrt(np.asarray(prior.var) + 1e-8), np.asarray(prior.mean)
    raw_obs, raw_next = np.asarray(batch["obs"]) * sd + mean, np.asarray(batch["next_obs"]) * sd + mean
    stored = jax.tree.map(lambda x: np.asarray(x)[0, :22], new.buffer.experience)  # 20 warm-up + 2 new
    for o, n in zip(raw_obs, raw_next):
        i = int(np.argmin(np.abs(stored["obs"] - o).sum(-1)))
        np.testing.assert_allclose(stored["obs"][i], o, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(stored["next_obs"][i], n, rtol=1e-4, atol=1e-4)
    # and the statistics then learn from the raw observations the policy acted on (the envs' current ones)
    acted_on = np.asarray(state.env_state.obs)
    assert np.isclose(float(new.obs_stats.count), 12.0)
    np.testing.assert_allclose(new.obs_stats.mean, (10.0 * mean + acted_on.sum(0)) / 12.0, rtol=1e-4, atol=1e-5)
