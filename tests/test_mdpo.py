"""MDPO, on- and off-policy (§5 of the spec): the mirror-descent step, its schedule and old policy,
the analytic KL, log_q, and the special cases that make SAC part of MDPO."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from helpers import tiny_trainer

from pgjax import onpolicy
from pgjax.agents import mdpo_off, mdpo_on, sac
from pgjax.distributions import gaussian_kl, gaussian_log_prob, gaussian_sample
from pgjax.networks import apply_ensemble

# ---------------------------------------------------------------- on-policy


def on_policy_batch(seed=0, n=64):
    """A learner, and a batch of its own actions with standardised advantages."""
    trainer, config = tiny_trainer("mdpo_on")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(seed), config).agent_state.learner
    k_obs, k_act, k_adv = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    obs = jax.random.normal(k_obs, (n, trainer.env.obs_size))
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    action = gaussian_sample(k_act, mean, log_std)
    batch = {
        "obs": obs,
        "action": action,
        "log_prob": gaussian_log_prob(action, mean, log_std),
        "advantage": onpolicy.normalize_advantages(jax.random.normal(k_adv, (n,))),
    }
    return trainer, config, learner, batch


def test_first_inner_step_is_the_plain_importance_weighted_policy_gradient():
    """At θ = θ_k: KL = 0, ∇KL = 0, ρ = 1, so ∇L = −mean(Â ∇log π) whatever the KL weight."""
    _, config, learner, batch = on_policy_batch()
    actor, params = learner.actor, learner.actor_params
    old_mean, old_log_std = actor.apply(params, batch["obs"])
    loss = lambda p, w: mdpo_on.policy_loss(p, actor, batch, old_mean, old_log_std, w)
    _, info = loss(params, 7.0)
    assert float(info["kl"]) == 0.0
    kl_grad = jax.grad(lambda p: loss(p, 1.0)[1]["kl"])(params)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(kl_grad)) < 1e-7

    def reinforce(p):
        mean, log_std = actor.apply(p, batch["obs"])
        return -(batch["advantage"] * gaussian_log_prob(batch["action"], mean, log_std)).mean()

    expected = jax.grad(reinforce)(params)
    for weight in (1.0, 7.0):
        got = jax.grad(lambda p: loss(p, weight)[0])(params)
        for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-7)
    assert max(float(jnp.abs(e).max()) for e in jax.tree.leaves(expected)) > 1e-3  # not a vacuous zero


def test_kl_grows_over_the_m_full_batch_steps_and_they_are_plain_adam_steps_on_the_whole_batch():
    _, config, learner, batch = on_policy_batch()
    config = config.replace(sgd_steps=10)
    # halfway through the run t_k = 0.5, so a KL weight of t_k instead of 1/t_k would show
    k = onpolicy.num_iterations(config) // 2
    learner = learner.replace(
        policy_opt=mdpo_on._optimizers(config)[0].init(learner.actor_params), updates=jnp.asarray(k)
    )
    actor_params, _, info = jax.jit(lambda l, b: mdpo_on.policy_update(l, b, config))(learner, batch)
    kl = np.asarray(info["kl"])
    assert kl.shape == (10,) and kl[0] == 0.0
    assert np.all(np.diff(kl) > 0) and float(info["final_kl"]) > kl[-1], kl

    # the same ten steps by hand: Adam on the loss of all 64 samples each time
    old_mean, old_log_std = learner.actor.apply(learner.actor_params, batch["obs"])
    assert float(mdpo_on.bregman_step_size(k, config)) == 0.5
    weight = 1.0 / float(mdpo_on.bregman_step_size(k, config))
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))
    params, state = learner.actor_params, optimizer.init(learner.actor_params)
    for _ in range(10):
        grads = jax.grad(lambda p: mdpo_on.policy_loss(p, learner.actor, batch, old_mean, old_log_std, weight)[0])(
            params
        )
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    for got, want in zip(jax.tree.leaves(actor_params), jax.tree.leaves(params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_update_standardises_advantages_over_the_whole_batch_and_clips_the_value_loss():
    """The policy sees advantages standardised over the whole batch (so an affine change of them changes
    nothing), and V's loss is the clipped one: mean max((V − R)², (V_old + clip(V − V_old, ±c) − R)²)."""
    trainer, config, learner, batch = on_policy_batch()
    n = batch["obs"].shape[0]
    rng = np.random.default_rng(3)
    value = learner.value_net.apply(learner.value_params, batch["obs"])[..., 0]
    batch = {
        **batch,
        "advantage": jnp.asarray(rng.normal(size=n), jnp.float32),
        "value": value + jnp.asarray(rng.normal(0, 0.3, n), jnp.float32),
        "target": jnp.asarray(rng.normal(size=n), jnp.float32),
    }
    update = jax.jit(lambda b: mdpo_on.update(learner, b, jax.random.PRNGKey(0), trainer.env, config)[0].actor_params)
    shifted = update({**batch, "advantage": 3.0 * batch["advantage"] + 5.0})
    for a, b in zip(jax.tree.leaves(update(batch)), jax.tree.leaves(shifted)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    v, v_old, r, c = (np.asarray(x, np.float64) for x in (value, batch["value"], batch["target"], config.value_clip))
    clipped = v_old + np.clip(v - v_old, -c, c)
    assert (np.abs(v - v_old) > c).any()
    expected = np.maximum((v - r) ** 2, (clipped - r) ** 2).mean()
    got, _ = mdpo_on.value_loss(learner.value_params, learner.value_net, batch, config.value_clip)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.isclose(expected, ((v - r) ** 2).mean(), rtol=1e-3)


def test_bregman_step_size_anneals_over_the_runs_own_iterations():
    """K = iterations the budget holds (6 here): t_0 = 1, t_5 = 1/6, and the loop steps k once per iteration."""
    trainer, config = tiny_trainer("mdpo_on")
    assert onpolicy.num_iterations(config) == 6
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state
    step = jax.jit(lambda s: mdpo_on.agent.iteration(s, trainer.env, config))
    seen = []
    for _ in range(6):
        state, metrics = step(state)
        seen.append(float(metrics["t_k"]))
    np.testing.assert_allclose(seen, 1.0 - np.arange(6) / 6, rtol=1e-6)
    assert int(state.learner.updates) == 6
    big = config.replace(total_steps=10_000_000)  # K from the budget, not a constant
    assert float(mdpo_on.bregman_step_size(0, big)) == 1.0
    np.testing.assert_allclose(float(mdpo_on.bregman_step_size(10_000_000 // 32 - 1, big)), 32 / 10_000_000, rtol=1e-3)


def test_analytic_gaussian_kl_matches_monte_carlo():
    mean, log_std = jnp.asarray([0.3, -0.5, 1.0]), jnp.log(jnp.asarray([0.7, 1.3, 0.5]))
    old_mean, old_log_std = jnp.asarray([0.0, 0.2, 0.4]), jnp.log(jnp.asarray([1.0, 0.9, 0.8]))
    x = gaussian_sample(jax.random.PRNGKey(0), jnp.broadcast_to(mean, (1_000_000, 3)), log_std)
    mc = float((gaussian_log_prob(x, mean, log_std) - gaussian_log_prob(x, old_mean, old_log_std)).mean())
    analytic = float(gaussian_kl(mean, log_std, old_mean, old_log_std))
    assert analytic > 0.3
    assert abs(mc - analytic) < 0.01 * analytic


# ---------------------------------------------------------------- off-policy


def off_policy_setup(seed=0, n=32):
    trainer, config = tiny_trainer("mdpo_off")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(seed), config).agent_state.learner
    actor, critic, _ = mdpo_off.networks(trainer.env, config)
    k_obs, k_old = jax.random.split(jax.random.PRNGKey(seed + 1))
    obs = jax.random.normal(k_obs, (n, trainer.env.obs_size))
    # an old policy that really differs from the current one
    old_params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(k_old, p.shape), learner.actor_params)
    q1_params = jax.tree.map(lambda p: p[0], learner.critic_params)
    return trainer, config, learner, actor, critic, obs, old_params, q1_params


def sac_actor_loss_with_q1(actor, critic, q1_params, params, alpha, obs, key):
    """SAC's actor loss where both twins are Q_1 (so min_j Q_j = Q_1)."""
    twins = jax.tree.map(lambda p: jnp.stack([p, p]), q1_params)
    return sac.actor_loss(params, actor, critic, twins, alpha, obs, key)[0]


def test_bregman_coefficient_equal_to_lambda_gives_sacs_actor_loss_for_any_old_policy():
    _, config, learner, actor, critic, obs, old_params, q1_params = off_policy_setup()
    config = config.replace(entropy_coef=0.3, kl_coef=0.3, gaussian_reg=0.0)
    key = jax.random.PRNGKey(5)
    q1 = lambda o, a: critic.apply(q1_params, o, a)
    mdpo = lambda p: mdpo_off.actor_loss(
        p, actor, mdpo_off.old_policy_log_density(actor, old_params), q1, obs, key, config
    )[0]
    sac_loss = lambda p: sac_actor_loss_with_q1(actor, critic, q1_params, p, 0.3, obs, key)
    params = learner.actor_params
    np.testing.assert_allclose(mdpo(params), sac_loss(params), rtol=1e-4)
    for g, e in zip(jax.tree.leaves(jax.grad(mdpo)(params)), jax.tree.leaves(jax.grad(sac_loss)(params))):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-6)
    # and the regulariser adds exactly 1e-3 (mean μ² + mean (log σ)²)
    reg = config.replace(gaussian_reg=1e-3)
    mean, log_std = actor.apply(params, obs)
    with_reg = mdpo_off.actor_loss(
        params, actor, mdpo_off.old_policy_log_density(actor, old_params), q1, obs, key, reg
    )[0]
    np.testing.assert_allclose(with_reg - mdpo(params), 1e-3 * ((mean**2).mean() + (log_std**2).mean()), rtol=1e-3)


def test_uniform_old_policy_gives_sacs_actor_loss_with_temperature_one_over_t():
    """log π_θk = −|A| log 2 everywhere: L = SAC's loss at α = 1/t_k plus the constant (λ − 1/t_k)(−|A| log 2);
    with 1/t_k = λ that is SAC at α = λ."""
    trainer, config, learner, actor, critic, obs, _, q1_params = off_policy_setup()
    uniform = lambda o, u: jnp.full(u.shape, -jnp.log(2.0))
    q1 = lambda o, a: critic.apply(q1_params, o, a)
    key, params, action_size = jax.random.PRNGKey(7), learner.actor_params, trainer.env.action_size
    for kl_coef, lam in ((1.0, 0.2), (0.2, 0.2), (0.5, 0.0)):
        c = config.replace(kl_coef=kl_coef, entropy_coef=lam, gaussian_reg=0.0)
        mdpo = lambda p: mdpo_off.actor_loss(p, actor, uniform, q1, obs, key, c)[0]
        sac_loss = lambda p: sac_actor_loss_with_q1(actor, critic, q1_params, p, kl_coef, obs, key)
        constant = (lam - kl_coef) * (-action_size * np.log(2.0))
        np.testing.assert_allclose(mdpo(params), sac_loss(params) + constant, rtol=1e-4, atol=1e-5)
        for g, e in zip(jax.tree.leaves(jax.grad(mdpo)(params)), jax.tree.leaves(jax.grad(sac_loss)(params))):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-6)


def test_actor_gradient_flows_through_the_sample_into_the_old_policy_density():
    """λ = 0, c = 1, Q = 0, π_θk = π_θ: L = mean[log π_θ(ã) − log π_θk(ã)] is 0, and its gradient is the
    score term alone, ∇_θ log π_θ(a) at a = sg(ã), because the pathwise parts through ã cancel. Were ã
    cut off from log π_θk, the gradient would be the pathwise one of log π_θ(ã) instead."""
    _, config, learner, actor, *_, obs, _, _ = off_policy_setup()
    config = config.replace(entropy_coef=0.0, kl_coef=1.0, gaussian_reg=0.0)
    params, key = learner.actor_params, jax.random.PRNGKey(11)
    zero_q = lambda o, a: jnp.zeros(o.shape[0])
    loss = lambda p: mdpo_off.actor_loss(
        p, actor, mdpo_off.old_policy_log_density(actor, params), zero_q, obs, key, config
    )[0]
    np.testing.assert_allclose(loss(params), 0.0, atol=1e-6)
    u = gaussian_sample(key, *actor.apply(params, obs))

    def score(p):
        return mdpo_off.squashed_log_density(u, *actor.apply(p, obs)).sum(-1).mean()

    def pathwise(p):
        mean, log_std = actor.apply(p, obs)
        return mdpo_off.squashed_log_density(gaussian_sample(key, mean, log_std), mean, log_std).sum(-1).mean()

    got, want, cut = (jax.tree.leaves(jax.grad(f)(params)) for f in (loss, score, pathwise))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-6)
    assert any(not np.allclose(g, c, rtol=1e-2, atol=1e-4) for g, c in zip(got, cut))


def test_gradient_step_targets_use_v_bar_min_q_and_the_actor_uses_q1():
    trainer, config, learner, actor, critic, obs, _, q1_params = off_policy_setup()
    _, _, value = mdpo_off.networks(trainer.env, config)
    n = obs.shape[0]
    rng = np.random.default_rng(2)
    batch = {
        "obs": obs,
        "action": jnp.asarray(rng.uniform(-1, 1, size=(n, 1)), jnp.float32),
        "reward": jnp.asarray(rng.normal(size=n), jnp.float32),
        "terminated": jnp.asarray(np.arange(n) % 2, jnp.float32),  # every other row terminated
        "next_obs": jnp.asarray(rng.normal(size=obs.shape), jnp.float32),
    }
    # a target value that differs from V, and twins that differ from each other
    learner = learner.replace(target_value_params=jax.tree.map(lambda p: p + 0.1, learner.value_params))
    key = jax.random.PRNGKey(4)
    loss, (action, log_pi) = mdpo_off.actor_loss(
        learner.actor_params,
        actor,
        mdpo_off.old_policy_log_density(actor, learner.old_actor_params),
        lambda o, a: critic.apply(q1_params, o, a),
        obs,
        key,
        config,
    )
    y_q, y_v = mdpo_off.critic_targets(learner, critic, value, batch, action, log_pi, config)

    v_bar = value.apply(learner.target_value_params, batch["next_obs"])[..., 0]
    np.testing.assert_allclose(y_q, batch["reward"] + config.gamma * (1 - batch["terminated"]) * v_bar, rtol=1e-5)
    np.testing.assert_allclose(y_q[1::2], batch["reward"][1::2], rtol=1e-6)  # no bootstrap after a termination
    q = apply_ensemble(critic, learner.critic_params, obs, action)
    assert not np.allclose(q[0], q[1])
    np.testing.assert_allclose(y_v, q.min(0) - config.entropy_coef * log_pi, rtol=1e-5, atol=1e-6)

    _, metrics = mdpo_off.gradient_step(learner, batch, key, trainer.env, config)
    np.testing.assert_allclose(metrics["actor_loss"], loss, rtol=1e-5)  # Q_1, not min_j Q_j
    with_min, _ = mdpo_off.actor_loss(
        learner.actor_params,
        actor,
        mdpo_off.old_policy_log_density(actor, learner.old_actor_params),
        lambda o, a: apply_ensemble(critic, learner.critic_params, o, a).min(0),
        obs,
        key,
        config,
    )
    assert not np.isclose(float(with_min), float(metrics["actor_loss"]), rtol=1e-4)


def replay_batch(trainer, rng, n=16):
    """16 random transitions, none terminal."""
    obs_size = trainer.env.obs_size
    return {
        "obs": jnp.asarray(rng.normal(size=(n, obs_size)), jnp.float32),
        "action": jnp.asarray(rng.uniform(-1, 1, size=(n, 1)), jnp.float32),
        "reward": jnp.asarray(rng.normal(size=n), jnp.float32),
        "terminated": jnp.zeros(n),
        "next_obs": jnp.asarray(rng.normal(size=(n, obs_size)), jnp.float32),
    }


def test_value_target_network_is_a_polyak_average_of_v_after_every_step():
    trainer, config, learner, *_ = off_policy_setup()
    batch = replay_batch(trainer, np.random.default_rng(1))
    learner = learner.replace(target_value_params=jax.tree.map(lambda p: p + 0.1, learner.value_params))
    new, _ = jax.jit(lambda l: mdpo_off.gradient_step(l, batch, jax.random.PRNGKey(2), trainer.env, config))(learner)
    for got, old, v in zip(
        *(jax.tree.leaves(t) for t in (new.target_value_params, learner.target_value_params, new.value_params))
    ):
        np.testing.assert_allclose(got, (1 - config.tau) * old + config.tau * v, rtol=1e-5, atol=1e-7)


def test_old_policy_changes_exactly_every_m_gradient_steps():
    trainer, config, learner, *_ = off_policy_setup()
    assert config.sgd_steps == 1000
    batch = replay_batch(trainer, np.random.default_rng(0))

    def body(l, k):
        new, _ = mdpo_off.gradient_step(l, batch, k, trainer.env, config)
        changed = jnp.any(
            jnp.stack(
                [
                    jnp.any(a != b)
                    for a, b in zip(jax.tree.leaves(new.old_actor_params), jax.tree.leaves(l.old_actor_params))
                ]
            )
        )
        equal_now = jnp.all(
            jnp.stack(
                [
                    jnp.all(a == b)
                    for a, b in zip(jax.tree.leaves(new.old_actor_params), jax.tree.leaves(new.actor_params))
                ]
            )
        )
        return new, (changed, equal_now)

    _, (changed, equal_now) = jax.jit(lambda l: jax.lax.scan(body, l, jax.random.split(jax.random.PRNGKey(0), 2001)))(
        learner
    )
    assert list(np.flatnonzero(changed)) == [999, 1999]  # after the 1000th and the 2000th step, never between
    assert list(np.flatnonzero(equal_now)) == [999, 1999]


def test_log_q_is_log_at_q_one_and_the_hand_values_elsewhere():
    p = jnp.asarray([1e-3, 0.1, 0.5, 1.0, 2.0, 30.0])
    np.testing.assert_allclose(mdpo_off.tsallis_log(jnp.log(p), 1.0), np.log(p), rtol=1e-6)
    np.testing.assert_allclose(mdpo_off.tsallis_log(jnp.log(p), 2.0), p - 1.0, rtol=1e-5, atol=1e-6)  # q = 0
    np.testing.assert_allclose(mdpo_off.tsallis_log(jnp.log(p), 1.5), (np.sqrt(p) - 1.0) / 0.5, rtol=1e-5, atol=1e-6)
    # densities are floored at 1e-6, as the reference's log_q
    np.testing.assert_allclose(mdpo_off.tsallis_log(jnp.asarray([-50.0]), 1.0), [np.log(1e-6)], rtol=1e-6)


def test_tsallis_loss_approaches_the_kl_loss_as_q_goes_to_one():
    _, config, learner, actor, critic, obs, old_params, q1_params = off_policy_setup()
    q1 = lambda o, a: critic.apply(q1_params, o, a)
    loss = lambda q: float(
        mdpo_off.actor_loss(
            learner.actor_params,
            actor,
            mdpo_off.old_policy_log_density(actor, old_params),
            q1,
            obs,
            jax.random.PRNGKey(3),
            config.replace(tsallis_q=q),
        )[0]
    )
    kl = loss(1.0)
    gaps = [abs(loss(1.0 + d) - kl) for d in (1e-1, 1e-2, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-2 * max(abs(kl), 1.0)
    assert gaps[0] > 1e-3  # the Tsallis loss really differs away from q = 1
