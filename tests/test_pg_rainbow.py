"""PG-Rainbow (§7 of the spec): the quantile Huber loss, the IQN's fixed point, expected-SARSA targets
with truncation versus termination, the FIFO replay, the features, the switch, and PPO as the exact
ablation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, tiny_trainer, train_one

from pgjax.agents import pg_rainbow, ppo
from pgjax.config import ConfigError, build
from pgjax.sorting import sort_last_axis


def test_quantile_huber_loss_equals_a_double_loop():
    rng = np.random.default_rng(0)
    n, n_next, kappa = 5, 7, 0.7
    quantiles, target = rng.normal(size=n) * 2, rng.normal(size=n_next) * 2
    taus = rng.uniform(size=n)
    total = 0.0
    for i in range(n):
        for j in range(n_next):
            d = target[j] - quantiles[i]
            huber = 0.5 * d * d if abs(d) <= kappa else kappa * (abs(d) - 0.5 * kappa)
            total += abs(taus[i] - (d < 0)) * huber / kappa
    ours = pg_rainbow.quantile_huber_loss(jnp.asarray(quantiles), jnp.asarray(taus), jnp.asarray(target), kappa)
    np.testing.assert_allclose(ours, total / n_next, rtol=1e-5)


def test_quantile_huber_gradient_has_the_asymmetric_weights():
    """Two quantiles at τ = 0.25, 0.75, a target 3 above or below both (beyond κ = 1): each quantile
    is pushed toward the target with weight τ (target above) or 1 - τ (target below)."""
    taus, quantiles = jnp.array([0.25, 0.75]), jnp.zeros(2)
    grad = jax.grad(lambda q, t: pg_rainbow.quantile_huber_loss(q, taus, t, 1.0))
    np.testing.assert_allclose(grad(quantiles, jnp.array([3.0])), -taus, rtol=1e-6)
    np.testing.assert_allclose(grad(quantiles, jnp.array([-3.0])), 1.0 - taus, rtol=1e-6)


def iqn_learner(**overrides):
    trainer, config = tiny_trainer("pg_rainbow", **overrides)
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    return learner, config, trainer.env


def two_point_batch(key, size, obs_size, action_size, low, high, p_low):
    """One state and action (not zero: the trunk's ReLUs would then be dead at their zero-initialised
    biases), reward low w.p. p_low else high, every transition terminal."""
    reward = jnp.where(jax.random.uniform(key, (size,)) < p_low, low, high)
    obs = jnp.full((size, obs_size), 0.5)
    return {
        "obs": obs,
        "action": jnp.full((size, action_size), 0.5),
        "reward": reward,
        "terminated": jnp.ones(size),
        "next_obs": obs,
    }


@pytest.mark.parametrize("kappa", [0.02, 1.0])
def test_iqn_alone_recovers_the_quantiles_of_a_two_point_return(kappa):
    """γ = 0, return -1 w.p. 0.4 else 2. With κ → 0 the fixed point is the true quantile function; with
    κ = 1 it is the Huber quantile, which solves p(1 - τ)κ = (1 - p)τ(2 - z) above the jump (and the
    mirror image below it), both derived by hand from the loss."""
    learner, config, env = iqn_learner(kappa=kappa, gamma=0.0, iqn_lr=1e-3)
    p = 0.4

    def step(learner, key):
        k_batch, k_step = jax.random.split(key)
        batch = two_point_batch(k_batch, 256, env.obs_size, env.action_size, -1.0, 2.0, p)
        return pg_rainbow.iqn_step(learner, learner.actor_params, batch, k_step, config)

    learner, losses = jax.jit(lambda l: jax.lax.scan(step, l, jax.random.split(jax.random.PRNGKey(1), 3000)))(learner)
    taus = jnp.array([0.1, 0.2, 0.6, 0.75, 0.9])
    z = learner.iqn.apply(
        learner.iqn_params, jnp.full((1, env.obs_size), 0.5), jnp.full((1, env.action_size), 0.5), taus
    )[0]
    if kappa < 0.1:
        expected = np.where(np.asarray(taus) < p, -1.0, 2.0)
    else:
        t = np.asarray(taus)
        expected = np.where(t < p, -1.0 + (1 - p) * t / (p * (1 - t)), 2.0 - p * (1 - t) / ((1 - p) * t))
    np.testing.assert_allclose(z, expected, atol=0.1)


def perturbed(params, key, scale=0.3):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def test_sarsa_target_bootstraps_through_truncation_not_termination():
    """With the target network apart from the online one and the acting policy's parameters apart from
    the learner's: the target uses Z_φ̄ and a' from the parameters it is given."""
    learner, config, env = iqn_learner()
    learner = learner.replace(iqn_target_params=perturbed(learner.iqn_params, jax.random.PRNGKey(5)))
    actor_params = perturbed(learner.actor_params, jax.random.PRNGKey(6))
    rng = np.random.default_rng(2)
    n = 6
    batch = {
        "obs": jnp.asarray(rng.normal(size=(n, env.obs_size)), jnp.float32),
        "action": jnp.zeros((n, env.action_size)),
        "reward": jnp.arange(n, dtype=jnp.float32),
        "terminated": jnp.array([1.0, 0, 1, 0, 0, 1]),
        "next_obs": jnp.asarray(rng.normal(size=(n, env.obs_size)), jnp.float32),
    }
    taus_next, key = jnp.full((n, 3), 0.5), jax.random.PRNGKey(4)
    target = pg_rainbow.sarsa_target(learner, actor_params, batch, taus_next, key, 0.9)
    mean, log_std = learner.actor.apply(actor_params, batch["next_obs"])
    next_action = jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1, 1)
    next_z = learner.iqn.apply(learner.iqn_target_params, batch["next_obs"], next_action, taus_next)
    terminal = np.asarray(batch["terminated"]) == 1
    np.testing.assert_array_equal(target[terminal], np.broadcast_to(np.arange(n)[terminal, None], (3, 3)))
    np.testing.assert_allclose(target[~terminal], (np.arange(n)[:, None] + 0.9 * next_z)[~terminal], rtol=1e-6)
    online_z = learner.iqn.apply(learner.iqn_params, batch["next_obs"], next_action, taus_next)
    assert not np.allclose(next_z[~terminal], online_z[~terminal], atol=1e-3)  # the check above can tell them apart


def test_replay_holds_the_last_m_rollouts_and_nothing_older():
    """Rollout r's rewards are all r (from 1, so that the empty slots, zeros, are told apart)."""
    _, config = tiny_trainer("pg_rainbow", replay_rollouts=3)
    size = pg_rainbow.onpolicy.steps_per_iteration(config)
    buffer = pg_rainbow.replay_buffer(config)
    state = buffer.init(pg_rainbow.transition_item(2, 1))
    for rollout in range(1, 8):
        items = {
            "obs": jnp.zeros((size, 2)),
            "action": jnp.zeros((size, 1)),
            "next_obs": jnp.zeros((size, 2)),
            "reward": jnp.full(size, float(rollout)),
            "terminated": jnp.zeros(size),
        }
        state = buffer.add(state, items)
        held = np.asarray(state.experience["reward"]).ravel()
        newest = list(range(max(1, rollout - 2), rollout + 1))
        assert held.size == 3 * size
        assert all((held == r).sum() == size for r in newest)
        assert (held == 0).sum() == (3 - len(newest)) * size  # nothing older: the rest is still empty
        sampled = buffer.sample(state, jax.random.PRNGKey(rollout)).experience["reward"]
        assert set(np.asarray(sampled).tolist()) <= set(newest)  # never an empty slot


def test_features_are_sorted_per_action_with_the_mean_action_first():
    learner, config, env = iqn_learner(feature_actions=3, feature_quantiles=5)
    obs = jnp.asarray(np.random.default_rng(3).normal(size=(4, env.obs_size)), jnp.float32)
    features = pg_rainbow.quantile_features(learner, obs, config)
    assert features.shape == (4, 15)
    per_action = np.asarray(features).reshape(4, 3, 5)
    assert (np.diff(per_action, axis=-1) >= 0).all()
    mean, _ = learner.actor.apply(learner.actor_params, obs)
    z_mean = learner.iqn.apply(learner.iqn_params, obs, jnp.clip(mean, -1, 1), pg_rainbow.midpoints(5))
    np.testing.assert_allclose(per_action[:, 0], np.sort(z_mean, -1), rtol=1e-5)
    # the same state gets the same features within an iteration (common random numbers)
    np.testing.assert_allclose(
        pg_rainbow.quantile_features(learner, obs[:1], config), features[:1], rtol=1e-5, atol=1e-7
    )


def test_value_is_the_critic_before_the_switch_and_the_substitute_after():
    learner, config, env = iqn_learner()
    obs = jnp.ones((5, env.obs_size))
    critic = pg_rainbow.gaussian_policy.value(learner, obs, config)
    features = pg_rainbow.quantile_features(learner, obs, config)
    before, after = config.replace(switch_fraction=1.0), config.replace(switch_fraction=0.0)
    distilled = pg_rainbow.distilled_value(learner.distill_params, learner, obs, features)
    np.testing.assert_array_equal(pg_rainbow.value(learner, obs, before)["value"], critic)
    np.testing.assert_allclose(pg_rainbow.value(learner, obs, after)["value"], distilled, rtol=1e-6)
    naive = after.replace(value_source="iqn_mean")
    np.testing.assert_allclose(pg_rainbow.value(learner, obs, naive)["value"], features.mean(-1), rtol=1e-6)
    for out in (
        pg_rainbow.value(learner, obs, before),
        pg_rainbow.value(learner, obs, after),
    ):  # kept for the update's clips
        np.testing.assert_array_equal(out["ppo_value"], critic)
        np.testing.assert_allclose(out["distilled_value"], distilled, rtol=1e-6)
        np.testing.assert_allclose(out["features"], features, rtol=1e-6)


def collected_batch(learner, env, n, key, config):
    """A batch as the rollout would give it: the sample's log-probs and value()'s outputs, random
    λ-returns and transitions."""
    k_obs, k_act, k_advantage, k_target, k_next = jax.random.split(key, 5)
    obs = jax.random.normal(k_obs, (n, env.obs_size))
    action, extras = pg_rainbow.gaussian_policy.sample(learner, obs, k_act, config)
    values = pg_rainbow.value(learner, obs, config)
    return {
        "obs": obs,
        "action": action,
        **extras,
        **values,
        "advantage": jax.random.normal(k_advantage, (n,)),
        "target": values["value"] + jax.random.normal(k_target, (n,)),
        "reward": jnp.ones(n),
        "next_obs": jax.random.normal(k_next, (n, env.obs_size)),
        "terminated": jnp.zeros(n),
    }


def test_after_the_switch_each_value_loss_clips_around_its_own_old_prediction():
    """After the switch the rollout's "value" is V_ψ, but PPO's V_θ is clipped around V_θ's old
    prediction: PG-Rainbow's actor and critic step equals PPO's update on the batch whose "value" is
    V_θ. And V_ψ's loss at the old parameters is the unclipped error (its anchor is V_ψ's own)."""
    learner, config, env = iqn_learner(clip_value_loss=True)
    learner = learner.replace(distill_params=perturbed(learner.distill_params, jax.random.PRNGKey(10), 1.0))
    after = config.replace(switch_fraction=0.0)
    batch = collected_batch(learner, env, 32, jax.random.PRNGKey(7), after)
    assert not np.allclose(batch["value"], batch["ppo_value"])
    key = jax.random.PRNGKey(8)
    ours, _ = pg_rainbow.update(learner, batch, key, env, after)
    ppo_learner = ppo.Learner(
        learner.actor_params, learner.value_params, learner.opt_state, learner.updates, learner.actor, learner.value_net
    )
    theirs, _ = ppo.update(ppo_learner, {**batch, "value": batch["ppo_value"]}, key, env, config)
    for a, b in [(ours.actor_params, theirs.actor_params), (ours.value_params, theirs.value_params)]:
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    # before the switch the rollout's "value" is V_θ, which would be the wrong anchor for V_ψ
    before = collected_batch(learner, env, 32, jax.random.PRNGKey(9), config.replace(switch_fraction=1.0))
    before["target"] = 2 * before["distilled_value"] - before["ppo_value"]  # beyond V_ψ, seen from V_θ
    loss, _ = pg_rainbow.distillation_loss(learner.distill_params, learner, before, config)
    np.testing.assert_allclose(loss, 0.5 * ((before["distilled_value"] - before["target"]) ** 2).mean(), rtol=1e-6)
    wrong, _ = pg_rainbow.distillation_loss(
        learner.distill_params, learner, {**before, "distilled_value": before["value"]}, config
    )
    assert wrong > loss * 1.01, "V_ψ and V_θ too close for the test to tell the anchors apart"


def test_switch_iteration_is_the_share_of_the_runs_iterations():
    _, config = tiny_trainer("pg_rainbow")  # 6 iterations
    assert int(pg_rainbow.switch_iteration(config.replace(switch_fraction=0.5))) == 3
    assert int(pg_rainbow.switch_iteration(config.replace(switch_fraction=1.0))) == 6


def test_switch_past_the_end_of_training_is_exactly_ppo():
    trainer, config = tiny_trainer("pg_rainbow", switch_fraction=1.0)
    ppo_trainer, ppo_config = tiny_trainer("ppo")
    run, curve = train_one(trainer, config, 0)
    ppo_run, ppo_curve = train_one(ppo_trainer, ppo_config, 0)
    ours, theirs = run.agent_state.learner, ppo_run.agent_state.learner
    for a, b in [
        (ours.actor_params, theirs.actor_params),
        (ours.value_params, theirs.value_params),
        (ours.opt_state, theirs.opt_state),
    ]:
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    np.testing.assert_allclose(curve.eval_return_mean, ppo_curve.eval_return_mean, rtol=1e-5)
    # and switching does change the run
    switched_run, _ = train_one(*tiny_trainer("pg_rainbow", switch_fraction=0.0), 0)
    assert not np.allclose(
        switched_run.agent_state.learner.actor_params["params"]["MLP_0"]["Dense_0"]["kernel"],
        ours.actor_params["params"]["MLP_0"]["Dense_0"]["kernel"],
    )


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("num_quantiles", 0, "num_quantiles must be > 0"),
        ("feature_quantiles", 0, "feature_quantiles must be > 0"),
        ("replay_rollouts", 0, "replay_rollouts must be > 0"),
        ("switch_fraction", 1.5, "switch_fraction = 1.5 must lie in [0, 1]"),
        ("switch_fraction", -0.1, "switch_fraction = -0.1 must lie in [0, 1]"),
        ("value_source", "mean", "value_source must be one of distilled, iqn_mean"),
    ],
)
def test_bad_values_are_rejected(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(pg_rainbow.Config, {**TINY["pg_rainbow"], field: value}, "pg_rainbow")


@pytest.mark.parametrize("n", [1, 3, 8, 32, 33])
def test_sorting_network_equals_jnp_sort(n):
    x = jnp.round(jax.random.normal(jax.random.PRNGKey(n), (2, 40, n)), 1)  # rounded: ties too
    np.testing.assert_array_equal(sort_last_axis(x), jnp.sort(x, -1))


def test_feature_quantile_levels_are_the_midpoints():
    np.testing.assert_allclose(pg_rainbow.midpoints(4), [0.125, 0.375, 0.625, 0.875], rtol=1e-6)


def test_feature_actions_after_the_mean_are_mu_plus_sigma_times_this_iterations_noise():
    """a_k = clip(μ(s) + σ ε_k, ±1) for k ≥ 1 (σ = e^-0.5 here), and q_φ(s) holds Z at those actions."""
    learner, config, env = iqn_learner(feature_actions=3, feature_quantiles=5)
    params = learner.actor_params
    learner = learner.replace(
        actor_params={"params": {**params["params"], "log_std": jnp.full_like(params["params"]["log_std"], -0.5)}}
    )
    obs = jnp.asarray(np.random.default_rng(4).normal(size=(4, env.obs_size)), jnp.float32)
    mean, _ = learner.actor.apply(learner.actor_params, obs)
    noise = np.asarray(learner.feature_noise)
    per_action = np.asarray(pg_rainbow.quantile_features(learner, obs, config)).reshape(4, 3, 5)
    for k in (1, 2):
        action = jnp.clip(mean + np.exp(-0.5) * noise[k - 1], -1, 1)
        z = learner.iqn.apply(learner.iqn_params, obs, action, pg_rainbow.midpoints(5))
        np.testing.assert_allclose(per_action[:, k], np.sort(z, -1), rtol=1e-5, atol=1e-6)


def test_distilled_value_is_f_of_the_head_times_the_features():
    """V_ψ(s) = f_ψ(h(s) ⊙ q_φ(s)), elementwise product of the head's K·N_q outputs and the features."""
    learner, config, env = iqn_learner()
    obs = jnp.asarray(np.random.default_rng(5).normal(size=(3, env.obs_size)), jnp.float32)
    features = jnp.asarray(np.random.default_rng(6).normal(size=(3, 4 * 32)), jnp.float32)
    head_params, distiller_params = learner.distill_params
    product = np.asarray(learner.feature_head.apply(head_params, obs)) * np.asarray(features)
    expected = learner.distiller.apply(distiller_params, jnp.asarray(product))[..., 0]
    np.testing.assert_allclose(
        pg_rainbow.distilled_value(learner.distill_params, learner, obs, features), expected, rtol=1e-5
    )


def test_iqn_target_network_is_polyak_averaged_toward_the_updated_network():
    """φ̄ ← τ φ + (1 - τ) φ̄ after each IQN step, φ the parameters after that step (τ = 0.3 here)."""
    learner, config, env = iqn_learner(iqn_lr=0.05, iqn_target_tau=0.3)
    learner = learner.replace(iqn_target_params=perturbed(learner.iqn_params, jax.random.PRNGKey(11)))
    batch = two_point_batch(jax.random.PRNGKey(12), 16, env.obs_size, env.action_size, -1.0, 2.0, 0.5)
    new, _ = pg_rainbow.iqn_step(learner, learner.actor_params, batch, jax.random.PRNGKey(13), config)
    expected = jax.tree.map(lambda t, o: 0.7 * t + 0.3 * o, learner.iqn_target_params, new.iqn_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.iqn_target_params, expected)
    assert not np.allclose(flat_leaves(new.iqn_params), flat_leaves(learner.iqn_params), atol=1e-3)


def flat_leaves(tree):
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def test_sarsa_target_action_is_a_sample_of_the_current_policy_not_its_mean():
    """a' = clip(μ(s') + σε, ±1) with the key given: with μ ≈ 0 and σ = e^-1 the samples stay inside the
    bounds, so a target at the mean action (or at a clipped-away sample) would differ."""
    learner, config, env = iqn_learner()
    params = learner.actor_params
    actor_params = {"params": {**params["params"], "log_std": jnp.full_like(params["params"]["log_std"], -1.0)}}
    learner = learner.replace(iqn_target_params=perturbed(learner.iqn_params, jax.random.PRNGKey(5)))
    rng = np.random.default_rng(3)
    n = 8
    batch = {
        "obs": jnp.zeros((n, env.obs_size)),
        "action": jnp.zeros((n, env.action_size)),
        "reward": jnp.ones(n),
        "terminated": jnp.zeros(n),
        "next_obs": jnp.asarray(rng.normal(size=(n, env.obs_size)), jnp.float32),
    }
    taus_next, key = jnp.full((n, 3), 0.5), jax.random.PRNGKey(4)
    target = pg_rainbow.sarsa_target(learner, actor_params, batch, taus_next, key, 0.9)
    mean, log_std = learner.actor.apply(actor_params, batch["next_obs"])
    sample = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    assert np.abs(sample).max() < 1.0  # nothing clipped
    z = lambda a: learner.iqn.apply(learner.iqn_target_params, batch["next_obs"], a, taus_next)
    np.testing.assert_allclose(target, 1.0 + 0.9 * z(sample), rtol=1e-5, atol=1e-6)
    assert not np.allclose(z(sample), z(mean), atol=1e-3)


def test_ppo_value_loss_is_anchored_at_v_theta_even_when_the_rollout_used_v_psi():
    """After the switch, with R = 2·V_θ − V_ψ: clipped around V_θ's old prediction the clip is inactive at
    the start (both terms equal (V_θ − R)²), so V_θ moves; clipped around V_ψ instead (which the rollout
    stored as "value"), the clipped term (2D − ε)² would win with zero gradient and V_θ would not move."""
    learner, config, env = iqn_learner(clip_value_loss=True)
    learner = learner.replace(distill_params=perturbed(learner.distill_params, jax.random.PRNGKey(10), 1.0))
    after = config.replace(switch_fraction=0.0)
    batch = collected_batch(learner, env, 32, jax.random.PRNGKey(7), after)
    assert np.abs(batch["value"] - batch["ppo_value"]).min() > 2 * config.clip_eps
    batch["target"] = 2 * batch["ppo_value"] - batch["value"]
    key = jax.random.PRNGKey(8)
    ours, metrics = pg_rainbow.update(learner, batch, key, env, after)
    ppo_learner = ppo.Learner(
        learner.actor_params, learner.value_params, learner.opt_state, learner.updates, learner.actor, learner.value_net
    )
    theirs, ppo_metrics = ppo.update(ppo_learner, {**batch, "value": batch["ppo_value"]}, key, env, config)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), ours.value_params, theirs.value_params
    )
    np.testing.assert_allclose(metrics["value_loss"], ppo_metrics["value_loss"], rtol=1e-5)
    assert not np.allclose(flat_leaves(ours.value_params), flat_leaves(learner.value_params), atol=1e-5)
