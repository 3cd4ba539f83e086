"""The config fields that reproduce Brax's trainers (`--preset brax`), each against Brax's own code where
Brax has it as a function (its GAE, its tanh-Gaussian distribution, its MLP), else against values derived
by hand: the truncation mask, GAE per unroll and the λ-target advantage, the squashed policy's
log-density and entropy estimate, the constant reward scale, no gradient clipping, Adam's epsilon,
separate value-network sizes, LeCun-uniform initialisation and the SAC critics' layer norm; and that
a config with every field at its default keeps the identity results were recorded under."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tiny_config

from pgjax import gaussian_policy, maxent, onpolicy
from pgjax.agents import ppo, sac
from pgjax.config import ConfigError, build, to_dict
from pgjax.distributions import tanh_gaussian_sample
from pgjax.envs import make
from pgjax.networks import MLP, QNetwork, SoftplusTanhGaussianActor, SquashedGaussianActor, apply_ensemble
from pgjax.returns import gae

ENV = "gymnax/Pendulum-v1"


def config(**overrides):
    return tiny_config("ppo", **overrides)


# ---------------------------------------------------------------- advantages, against brax's compute_gae


def rollout_with_episode_ends(T: int, B: int, seed: int):
    """Rewards, values, next values (V of the next row's observation within an episode, of the pre-reset
    observation at its end) and terminations and truncations at random places."""
    rng = np.random.default_rng(seed)
    r, v = rng.normal(size=(2, T, B)).astype(np.float32)
    term = rng.random((T, B)) < 0.08
    trunc = (rng.random((T, B)) < 0.08) & ~term
    v_next = np.concatenate([v[1:], rng.normal(size=(1, B))]).astype(np.float32)
    final = term | trunc
    v_next[final] = rng.normal(size=final.sum())  # the pre-reset observation's value: not the next row's
    return r, v, v_next, term, trunc


def test_masked_segmented_lambda_target_advantages_equal_brax_compute_gae_per_unroll():
    """Brax's PPO computes, per unroll of unroll_length steps, vs = V + Â (the λ-return, restarted from
    V(next obs) at the unroll's end) and the advantage r + γ(1 − term) vs_{t+1} − V, both masked at
    truncations; ours over the whole rollout with segment = unroll_length, mask_truncated and
    advantage = "lambda_target" must give the same numbers."""
    from brax.training.agents.ppo.losses import compute_gae

    T, B, unroll, gamma, lam = 60, 5, 20, 0.97, 0.9
    r, v, v_next, term, trunc = rollout_with_episode_ends(T, B, 0)
    adv, targets = gae(
        jnp.asarray(r),
        jnp.asarray(v),
        jnp.asarray(v_next),
        jnp.asarray(term),
        jnp.asarray(term | trunc),
        gamma,
        lam,
        segment=unroll,
        mask_truncated=True,
        advantage="lambda_target",
    )
    for start in range(0, T, unroll):
        s = slice(start, start + unroll)
        vs, brax_adv = compute_gae(
            truncation=jnp.asarray(trunc[s], jnp.float32),
            termination=jnp.asarray(term[s], jnp.float32),
            rewards=jnp.asarray(r[s]),
            values=jnp.asarray(v[s]),
            bootstrap_value=jnp.asarray(v_next[s][-1]),
            lambda_=lam,
            discount=gamma,
        )
        np.testing.assert_allclose(targets[s], vs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(adv[s], brax_adv, rtol=1e-5, atol=1e-5)


def test_a_masked_truncation_has_no_advantage_and_its_own_value_as_target():
    r, v, v_next, term, trunc = rollout_with_episode_ends(30, 3, 1)
    assert trunc.any()
    adv, targets = gae(r, v, v_next, term, term | trunc, 0.99, 0.95, mask_truncated=True)
    np.testing.assert_array_equal(np.asarray(adv)[trunc], 0.0)
    np.testing.assert_allclose(np.asarray(targets)[trunc], v[trunc])
    unmasked, _ = gae(r, v, v_next, term, term | trunc, 0.99, 0.95)
    np.testing.assert_allclose(np.asarray(unmasked)[trunc], (r + 0.99 * v_next - v)[trunc], rtol=1e-5)


def test_gae_restarts_from_the_value_at_each_segment_end():
    """With segment k, step k − 1 is its segment's last: its advantage is its own TD error, and the steps
    before it sum TD errors only up to it."""
    T, k, gamma, lam = 12, 4, 0.9, 0.8
    rng = np.random.default_rng(2)
    r, v, v_next = rng.normal(size=(3, T)).astype(np.float32)
    none = np.zeros(T, bool)
    adv, _ = gae(r, v, v_next, none, none, gamma, lam, segment=k)
    delta = r + gamma * v_next - v
    for t in range(T):
        end = (t // k + 1) * k
        expected = sum((gamma * lam) ** (j - t) * delta[j] for j in range(t, end))
        np.testing.assert_allclose(adv[t], expected, rtol=1e-5, atol=1e-6)


def test_lambda_target_advantage_is_the_td_error_plus_the_discounted_next_gae():
    T, gamma, lam = 10, 0.95, 0.7
    rng = np.random.default_rng(3)
    r, v, v_next = rng.normal(size=(3, T)).astype(np.float32)
    term = np.zeros(T, bool)
    term[4] = True
    gae_adv, _ = gae(r, v, v_next, term, term, gamma, lam)
    adv, _ = gae(r, v, v_next, term, term, gamma, lam, advantage="lambda_target")
    delta = r + gamma * (1 - term) * v_next - v
    following = np.append(np.asarray(gae_adv)[1:], 0.0) * (1 - term)
    np.testing.assert_allclose(adv, delta + gamma * following, rtol=1e-5, atol=1e-6)


def test_loop_hands_gae_the_constant_reward_scale_the_truncation_mask_the_segment_and_the_advantage():
    """The loop's batch with Brax's four choices equals `gae` called with them on 10 × the raw rewards
    (a time limit at index 199 of a 201-step rollout)."""
    from test_ppo import loop_value, one_loop_iteration

    _, _, _, raw_batch, _ = one_loop_iteration(scale_rewards=False)
    cfg, _, _, batch, _ = one_loop_iteration(
        scale_rewards=False, reward_scale=10.0, mask_truncated=True, gae_segment=50, advantage="lambda_target"
    )
    np.testing.assert_allclose(batch["reward"], 10.0 * raw_batch["reward"], rtol=1e-6)
    done = np.zeros((201, 2), bool)
    done[199] = True
    values, next_values = loop_value(None, batch["obs"]), loop_value(None, batch["next_obs"])
    adv, targets = gae(
        jnp.asarray(batch["reward"]),
        values,
        next_values,
        np.zeros_like(done),
        done,
        cfg.gamma,
        cfg.gae_lambda,
        segment=50,
        mask_truncated=True,
        advantage="lambda_target",
    )
    np.testing.assert_allclose(batch["advantage"], adv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batch["target"], targets, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(batch["advantage"][199], 0.0)


# ---------------------------------------------------------------- the squashed policy, against brax's distribution


def test_tanh_gaussian_policy_log_density_and_entropy_equal_brax_normal_tanh_distribution():
    """std = softplus(raw) + 0.001; log π at the stored pre-squash sample with the tanh Jacobian; the
    entropy is the Gaussian's plus log |d tanh(u)/du| at a sample drawn with the loss's key."""
    from brax.training.distribution import NormalTanhDistribution

    env = make(ENV)
    cfg = config(policy="tanh_gaussian", kernel_init="lecun_uniform", hidden_sizes=(8,))
    learner = ppo.init_learner(jax.random.PRNGKey(0), env, cfg)
    assert isinstance(learner.actor, SoftplusTanhGaussianActor)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, env.obs_size)) * 3
    brax = NormalTanhDistribution(event_size=env.action_size)
    logits = MLP(cfg.hidden_sizes, 2 * env.action_size, cfg.activation, weight_init=cfg.kernel_init).apply(
        {"params": learner.actor_params["params"]["MLP_0"]}, obs
    )
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    np.testing.assert_allclose(jnp.exp(log_std), brax.create_dist(logits).scale, rtol=1e-5)

    action, extras = gaussian_policy.sample(learner, obs, jax.random.PRNGKey(2), None)
    np.testing.assert_allclose(action, jnp.tanh(extras["raw_action"]), rtol=1e-6)
    assert float(jnp.abs(action).max()) < 1.0
    np.testing.assert_allclose(extras["log_prob"], brax.log_prob(logits, extras["raw_action"]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        gaussian_policy.log_prob(learner.actor, mean, log_std, extras), extras["log_prob"], rtol=1e-5
    )
    key = jax.random.PRNGKey(3)
    np.testing.assert_allclose(
        gaussian_policy.entropy(learner.actor, mean, log_std, key), brax.entropy(logits, key), rtol=1e-4, atol=1e-4
    )


def test_the_squashed_policy_acts_with_tanh_of_its_mean_when_deterministic():
    env = make(ENV)
    squashed = config(policy="tanh_gaussian", kernel_init="lecun_uniform")
    state = ppo.agent.init(jax.random.PRNGKey(0), env, squashed)
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, env.obs_size)) * 5
    mean, _ = state.learner.actor.apply(state.learner.actor_params, onpolicy.normalizer(state)(obs))
    assert float(jnp.abs(mean).max()) > 0.5  # far enough from 0 that tanh(mean) and mean differ
    np.testing.assert_allclose(
        ppo.act(state, obs, jax.random.PRNGKey(0), squashed, deterministic=True), jnp.tanh(mean), rtol=1e-6
    )


def test_the_ppo_loss_takes_the_squashed_policys_ratio_at_the_raw_action():
    env = make(ENV)
    cfg = config(policy="tanh_gaussian")
    learner = ppo.init_learner(jax.random.PRNGKey(0), env, cfg)
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, env.obs_size))
    action, extras = gaussian_policy.sample(learner, obs, jax.random.PRNGKey(2), None)
    batch = {
        "obs": obs,
        "action": action,
        **extras,
        "advantage": jnp.linspace(-1, 1, 16),
        "value": jnp.zeros(16),
        "target": jnp.zeros(16),
        "key": jax.random.PRNGKey(4),
    }
    _, info = ppo.ppo_loss((learner.actor_params, learner.value_params), learner.actor, learner.value_net, batch, cfg)
    assert abs(float(info["approx_kl"])) < 1e-6  # the behaviour policy itself: every ratio is 1


# ---------------------------------------------------------------- networks and optimiser


def test_value_hidden_sizes_and_lecun_uniform_init_shape_brax_networks():
    env = make(ENV)
    learner = ppo.init_learner(
        jax.random.PRNGKey(0),
        env,
        config(hidden_sizes=(32,) * 4, value_hidden_sizes=(256,) * 5, kernel_init="lecun_uniform"),
    )
    actor_layers = learner.actor_params["params"]["MLP_0"]
    critic_layers = learner.value_params["params"]
    assert [actor_layers[f"Dense_{i}"]["kernel"].shape[1] for i in range(4)] == [32] * 4
    assert [critic_layers[f"Dense_{i}"]["kernel"].shape[1] for i in range(6)] == [256] * 5 + [1]
    for layer in critic_layers.values():  # LeCun uniform: U(±sqrt(3 / fan_in)), variance 1 / fan_in
        kernel = np.asarray(layer["kernel"])
        bound = np.sqrt(3.0 / kernel.shape[0])
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    first = np.asarray(critic_layers["Dense_1"]["kernel"])
    assert abs(first.var() * 256 - 1.0) < 0.05
    # the default stays orthogonal: columns of a square layer are orthonormal up to the gain
    default = np.asarray(
        ppo.init_learner(jax.random.PRNGKey(0), env, config()).value_params["params"]["Dense_1"]["kernel"]
    )
    np.testing.assert_allclose(default.T @ default, 2.0 * np.eye(64), atol=1e-4)


def test_without_gradient_clipping_a_large_gradient_takes_plain_adams_step_with_its_epsilon():
    """A large gradient (norm 500) then a small one at a right angle: clipped at 0.5, the first no longer
    dominates Adam's moments, so the second step turns toward the second gradient; unclipped, ours is plain
    Adam."""
    params = {"w": jnp.array([1.0, -2.0])}
    grads = [{"w": jnp.array([300.0, -400.0])}, {"w": jnp.array([0.4, 0.3])}]

    def second_step(opt):
        state = opt.init(params)
        for g in grads:
            updates, state = opt.update(g, state, params)
        return np.asarray(updates["w"])

    cfg = config(clip_gradients=False, adam_eps=1e-8, anneal_lr=False)
    plain = second_step(optax.adam(cfg.lr, eps=1e-8))
    np.testing.assert_allclose(second_step(ppo.optimizer(cfg)), plain, rtol=1e-6)
    clipped = second_step(ppo.optimizer(config(anneal_lr=False)))
    np.testing.assert_allclose(
        clipped, second_step(optax.chain(optax.clip_by_global_norm(0.5), optax.adam(cfg.lr, eps=1e-5))), rtol=1e-6
    )
    assert np.abs(clipped - plain).max() > 0.5 * np.abs(plain).max()
    # Adam's first step is lr·g/(|g| + ε): with |g| tiny, ε decides its size
    tiny = {"w": jnp.array([1e-6, 1e-6])}
    for eps in (1e-5, 1e-8):
        opt = ppo.optimizer(config(clip_gradients=False, adam_eps=eps, anneal_lr=False))
        updates, _ = opt.update(tiny, opt.init(params), params)
        np.testing.assert_allclose(updates["w"], -cfg.lr * 1e-6 / (1e-6 + eps), rtol=1e-3)


def test_sac_critic_layer_norm_normalises_each_hidden_activation_as_brax_does():
    """Brax's MLP with layer_norm: Dense, activation, then LayerNorm (scale 1, offset 0 at init)."""
    from brax.training.networks import MLP as BraxMLP

    critic = QNetwork((16, 16), "relu", layer_norm=True)
    obs, action = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
    params = critic.init(jax.random.PRNGKey(1), obs, action)
    ours = critic.apply(params, obs, action)
    layers = params["params"]["MLP_0"]
    brax_params = {
        "params": {
            **{f"hidden_{i}": layers[f"Dense_{i}"] for i in range(3)},
            **{f"LayerNorm_{i}": layers[f"LayerNorm_{i}"] for i in range(2)},
        }
    }
    brax = BraxMLP(layer_sizes=[16, 16, 1], activation=jax.nn.relu, layer_norm=True)
    np.testing.assert_allclose(ours, brax.apply(brax_params, jnp.concatenate([obs, action], -1))[..., 0], rtol=1e-5)
    plain = QNetwork((16, 16), "relu").init(jax.random.PRNGKey(1), obs, action)
    assert "LayerNorm_0" not in plain["params"]["MLP_0"]
    env = make(ENV)
    learner = sac.init_learner(jax.random.PRNGKey(0), env, build(sac.Config, {"critic_layer_norm": True}, "sac"))
    assert "LayerNorm_0" in learner.critic_params["params"]["MLP_0"]


def sac_config(**overrides):
    return build(
        sac.Config,
        {"num_envs": 4, "warmup_steps": 16, "batch_size": 32, "buffer_size": 64, "total_steps": 64, **overrides},
        "sac",
    )


def sac_batch(env, n: int = 32, seed: int = 0) -> dict:
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {
        "obs": jax.random.normal(k[0], (n, env.obs_size)),
        "next_obs": jax.random.normal(k[1], (n, env.obs_size)),
        "action": jax.random.uniform(k[2], (n, env.action_size), minval=-1, maxval=1),
        "reward": jax.random.normal(k[3], (n,)),
        "terminated": (jnp.arange(n) % 7 == 0).astype(jnp.float32),
        "truncated": (jnp.arange(n) % 5 == 0).astype(jnp.float32),
    }


def test_sac_softplus_std_and_lecun_init_give_brax_sac_policy_density():
    """Brax's SAC policy: an MLP (LeCun uniform) to mean and raw scale, std = softplus(raw) + 0.001,
    a = tanh(u); our reparameterised sample and its log-density equal Brax's for the same key."""
    from brax.training.distribution import NormalTanhDistribution

    env = make(ENV)
    cfg = sac_config(policy_std="softplus", kernel_init="lecun_uniform", hidden_sizes=(16, 16))
    learner = sac.init_learner(jax.random.PRNGKey(0), env, cfg)
    assert isinstance(learner.actor, SoftplusTanhGaussianActor)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, env.obs_size)) * 3
    logits = MLP(cfg.hidden_sizes, 2 * env.action_size, cfg.activation, weight_init="lecun_uniform").apply(
        {"params": learner.actor_params["params"]["MLP_0"]}, obs
    )
    brax = NormalTanhDistribution(event_size=env.action_size)
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    key = jax.random.PRNGKey(2)
    raw = brax.sample_no_postprocessing(logits, key)
    action, log_prob = tanh_gaussian_sample(key, mean, log_std)
    np.testing.assert_allclose(action, jnp.tanh(raw), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_prob, brax.log_prob(logits, raw), rtol=1e-4, atol=1e-4)
    critic_kernel = np.asarray(learner.critic_params["params"]["MLP_0"]["Dense_1"]["kernel"][0])
    actor_kernel = np.asarray(learner.actor_params["params"]["MLP_0"]["Dense_1"]["kernel"])
    for kernel in (critic_kernel, actor_kernel):  # LeCun uniform: U(±sqrt(3 / fan_in))
        bound = np.sqrt(3.0 / kernel.shape[0])
        assert bound * 0.8 < np.abs(kernel).max() <= bound
    default = sac.init_learner(jax.random.PRNGKey(0), env, sac_config(hidden_sizes=(16, 16)))
    assert isinstance(default.actor, SquashedGaussianActor)
    square = np.asarray(default.critic_params["params"]["MLP_0"]["Dense_1"]["kernel"][0])
    np.testing.assert_allclose(square.T @ square, 2.0 * np.eye(16), atol=1e-4)  # orthogonal, gain sqrt 2


def test_sac_mask_truncated_leaves_truncated_transitions_out_of_the_critic_loss_as_brax():
    """Brax: q_error *= 1 - truncation, then ½ mean over batch and twins; ours sums the twins (twice
    Brax's value, the same Adam step). With the mask a truncated transition's reward moves nothing."""
    env = make(ENV)
    cfg = sac_config(mask_truncated=True)
    learner = sac.init_learner(jax.random.PRNGKey(0), env, cfg)
    batch = sac_batch(env)
    critic = sac.networks(env, cfg)[1]
    target = jax.random.normal(jax.random.PRNGKey(5), (32,))
    q = np.asarray(apply_ensemble(critic, learner.critic_params, batch["obs"], batch["action"])).T  # [B, 2]
    error = (q - np.asarray(target)[:, None]) * (1 - np.asarray(batch["truncated"]))[:, None]
    brax_loss = 0.5 * np.mean(error**2)
    loss, _ = sac.critic_loss(learner.critic_params, critic, batch, target, sac.critic_weight(batch, cfg))
    np.testing.assert_allclose(loss, 2 * brax_loss, rtol=1e-5)

    def critics_after(config, reward):
        new, _ = sac.gradient_step(learner, {**batch, "reward": reward}, jax.random.PRNGKey(3), env, config)
        return jax.tree.leaves(new.critic_params)

    truncated_reward = batch["reward"] + 10.0 * batch["truncated"]
    for a, b in zip(critics_after(cfg, batch["reward"]), critics_after(cfg, truncated_reward)):
        np.testing.assert_array_equal(a, b)
    unmasked = cfg.replace(mask_truncated=False)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(critics_after(unmasked, batch["reward"]), critics_after(unmasked, truncated_reward))
    )


def test_with_mask_truncated_the_replay_stores_each_transitions_time_limit_flag_and_only_then():
    """Pendulum's episodes end at 200 steps by truncation: 256 warm-up steps in one env hold one."""
    env = make(ENV)
    masked = sac.agent.init(
        jax.random.PRNGKey(0),
        env,
        sac_config(mask_truncated=True, num_envs=1, warmup_steps=256, buffer_size=512, total_steps=1024),
    )
    stored = masked.buffer.experience
    truncated = np.flatnonzero(np.asarray(stored["truncated"]).reshape(-1)[:256])
    np.testing.assert_array_equal(truncated, [199])
    assert not np.asarray(stored["terminated"]).any()
    plain = sac.agent.init(
        jax.random.PRNGKey(0), env, sac_config(num_envs=1, warmup_steps=256, buffer_size=512, total_steps=1024)
    )
    assert "truncated" not in plain.buffer.experience


def test_sac_actor_steps_on_the_updated_critics_or_as_brax_on_the_pre_update_ones():
    env = make(ENV)
    batch = sac_batch(env)
    key = jax.random.PRNGKey(3)
    _, actor_key = jax.random.split(key)
    for on_updated in (True, False):
        cfg = sac_config(actor_on_updated_critics=on_updated)
        learner = sac.init_learner(jax.random.PRNGKey(0), env, cfg)
        new, _ = sac.gradient_step(learner, batch, key, env, cfg)
        actor, critic = sac.networks(env, cfg)
        critics = new.critic_params if on_updated else learner.critic_params
        grads = jax.grad(lambda p: sac.actor_loss(p, actor, critic, critics, 1.0, batch["obs"], actor_key)[0])(
            learner.actor_params
        )
        updates, _ = optax.adam(cfg.actor_lr).update(grads, learner.actor_opt)
        expected = optax.apply_updates(learner.actor_params, updates)
        for a, b in zip(jax.tree.leaves(new.actor_params), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_sac_temperature_loss_on_alpha_scales_the_log_alpha_gradient_by_alpha_as_brax():
    """Brax: L = α·sg(-log π - H̄), so dL/d log α = -α·mean(log π + H̄); ours: -mean(log π + H̄).
    Two steps with a large α learning rate (Adam's first step is the same for both) tell them apart."""
    log_alpha, log_prob, target = jnp.asarray(0.7), jnp.asarray([-1.0, 0.5, 2.0]), -0.5
    np.testing.assert_allclose(
        jax.grad(maxent.temperature_loss_on_alpha)(log_alpha, log_prob, target),
        -np.exp(0.7) * np.mean(np.asarray(log_prob) + target),
        rtol=1e-6,
    )
    env = make(ENV)
    batch = sac_batch(env)
    for form in ("log_alpha", "alpha"):
        cfg = sac_config(temperature_loss=form, alpha_lr=0.5, init_alpha=0.3)
        learner = sac.init_learner(jax.random.PRNGKey(0), env, cfg)
        opt, opt_state, log_alpha = optax.adam(0.5), learner.alpha_opt, learner.log_alpha
        for step in range(2):
            learner, metrics = sac.gradient_step(learner, batch, jax.random.PRNGKey(step), env, cfg)
            scale = float(metrics["alpha"]) if form == "alpha" else 1.0  # α before this step's update
            grad = -scale * (-float(metrics["entropy"]) + maxent.target_entropy(env.action_size, cfg))
            updates, opt_state = opt.update(jnp.asarray(grad), opt_state)
            log_alpha = optax.apply_updates(log_alpha, updates)
        np.testing.assert_allclose(learner.log_alpha, log_alpha, rtol=1e-5)


# ---------------------------------------------------------------- presets, checks and identity


def test_brax_preset_sets_every_brax_choice_and_playground_keeps_ours():
    from mujoco_playground.config import dm_control_suite_params as params

    from pgjax.presets import preset_overrides

    p = params.brax_ppo_config("CartpoleSwingup")
    brax = build(ppo.Config, preset_overrides("brax", "ppo", "dmc/CartpoleSwingup", 10**6), "ppo")
    assert (brax.scale_rewards, brax.reward_scale, brax.policy, brax.kernel_init) == (
        False,
        p.reward_scaling,
        "tanh_gaussian",
        "lecun_uniform",
    )
    assert (brax.hidden_sizes, brax.value_hidden_sizes) == ((32,) * 4, (256,) * 5)  # brax's network defaults
    assert (brax.clip_gradients, brax.clip_value_loss, brax.adam_eps) == (False, False, 1e-8)
    assert (brax.mask_truncated, brax.gae_segment, brax.advantage) == (True, p.unroll_length, "lambda_target")
    ours = build(ppo.Config, preset_overrides("playground", "ppo", "dmc/CartpoleSwingup", 10**6), "ppo")
    assert (ours.scale_rewards, ours.policy, ours.clip_gradients, ours.mask_truncated) == (
        True,
        "gaussian",
        True,
        False,
    )
    s = build(sac.Config, preset_overrides("brax", "sac", "dmc/CartpoleSwingup", 10**6), "sac")
    assert s.critic_layer_norm and s.alpha_lr == 3e-4  # brax sac.train's temperature learning rate is fixed
    assert (
        s.policy_std,
        s.kernel_init,
        s.mask_truncated,
        s.actor_on_updated_critics,
        s.temperature_loss,
        s.random_warmup,
    ) == ("softplus", "lecun_uniform", True, False, "alpha", False)
    assert s.target_entropy_scale == 0.5 and s.init_alpha == 1.0  # brax: -|A|/2, log α starts at 0
    o = build(sac.Config, preset_overrides("playground", "sac", "dmc/CartpoleSwingup", 10**6), "sac")
    assert (o.policy_std, o.mask_truncated, o.actor_on_updated_critics, o.temperature_loss) == (
        "clipped_log_std",
        False,
        True,
        "log_alpha",
    )


def test_agents_that_do_not_honour_the_brax_network_fields_do_not_have_them():
    from pgjax.agents import pg_rainbow, pmoe_ppo, pmoe_sac

    for module, agent, names in (
        (pmoe_ppo, "pmoe_ppo", ("policy", "value_hidden_sizes", "kernel_init")),
        (pg_rainbow, "pg_rainbow", ("policy",)),
        (pmoe_sac, "pmoe_sac", ("policy_std", "kernel_init")),
    ):
        for name in names:
            with pytest.raises(ConfigError, match=f"unknown config field '{name}' for {agent}"):
                build(module.Config, {name: "x"}, agent)
    # what PG-Rainbow does keep of PPO's networks
    assert build(pg_rainbow.Config, {"kernel_init": "lecun_uniform"}, "pg_rainbow").kernel_init == "lecun_uniform"
    with pytest.raises(ConfigError, match="temperature_loss must be one of log_alpha, alpha"):
        sac_config(temperature_loss="alpha2")
    with pytest.raises(ConfigError, match="advantage must be one of gae, lambda_target"):
        config(advantage="vtrace")


def test_added_fields_at_their_default_keep_the_config_ids_results_were_written_under():
    from pgjax.groups import config_id

    runs = json.loads((Path(__file__).parents[1] / "results" / "suite_cpu" / "runs.json").read_text())
    for agent, module, change in (
        ("ppo", ppo, {"adam_eps": 1e-8, "mask_truncated": True}),
        ("sac", sac, {"policy_std": "softplus", "mask_truncated": True}),
    ):
        plan = next(p for p in runs["plan"] if p["agent"] == agent)
        recorded = plan["configs"][0]
        cfg = build(module.Config, recorded, agent)
        assert to_dict(cfg) == recorded
        assert config_id(agent, plan["env"], plan["backend"], cfg) == plan["config_ids"][0]
        changed = to_dict(cfg.replace(**change))
        assert all(changed[k] == v for k, v in change.items())
