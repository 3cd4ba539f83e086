"""PMOE (§6 of the spec): the mixture density, the frequency loss, back-propagation of the optimal
expert only, one critic call for all experts, and K = 1 reducing to SAC and to a Gaussian policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_trainer

from pgjax import maxent, mixture, offpolicy
from pgjax.agents import pmoe_ppo, pmoe_sac, sac
from pgjax.config import ConfigError, build
from pgjax.distributions import gaussian_log_prob, gaussian_sample, tanh_gaussian_sample
from pgjax.networks import apply_ensemble


def random_batch(n, obs_size, action_size, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "obs": jnp.asarray(rng.normal(size=(n, obs_size)), jnp.float32),
        "action": jnp.asarray(rng.uniform(-1, 1, size=(n, action_size)), jnp.float32),
        "reward": jnp.asarray(rng.normal(size=n), jnp.float32),
        "terminated": jnp.asarray(np.arange(n) % 3 == 0, jnp.float32),
        "next_obs": jnp.asarray(rng.normal(size=(n, obs_size)), jnp.float32),
    }


def test_pmoe_sac_with_one_expert_takes_exactly_sacs_update():
    trainer, config = tiny_trainer("pmoe_sac", num_experts=1)
    _, sac_config = tiny_trainer("sac")
    env = trainer.env
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    sac_actor, _ = sac.networks(env, sac_config)
    actor_opt = maxent.optimizers(sac_config)[0]
    trunk = {"params": {"MLP_0": learner.actor_params["params"]["MLP_0"]}}
    sac_learner = sac.Learner(
        trunk,
        learner.critic_params,
        learner.target_params,
        learner.log_alpha,
        actor_opt.init(trunk),
        learner.critic_opt,
        learner.alpha_opt,
        sac_actor,
        learner.q_net,
    )
    batch, key = random_batch(16, env.obs_size, env.action_size), jax.random.PRNGKey(3)
    for _ in range(3):  # a few steps, so Adam's moments are exercised too
        learner, m = jax.jit(lambda l, b: pmoe_sac.gradient_step(l, b, key, env, config))(learner, batch)
        sac_learner, sm = jax.jit(lambda l, b: sac.gradient_step(l, b, key, env, sac_config))(sac_learner, batch)
    pairs = [
        (learner.actor_params["params"]["MLP_0"], sac_learner.actor_params["params"]["MLP_0"]),
        (learner.critic_params, sac_learner.critic_params),
        (learner.target_params, sac_learner.target_params),
        (learner.log_alpha, sac_learner.log_alpha),
    ]
    for ours, theirs in pairs:
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["actor_loss"], sm["actor_loss"], rtol=1e-5)
    assert float(m["gate_entropy"]) == 0.0 and float(np.asarray(m["expert_usage"])[0]) == 1.0


def test_pmoe_ppo_mixture_likelihood_with_one_expert_is_the_gaussians():
    trainer, config = tiny_trainer("pmoe_ppo", num_experts=1)
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    obs = jax.random.normal(jax.random.PRNGKey(1), (32, trainer.env.obs_size))
    logits, mean, log_std = learner.actor.apply(learner.actor_params, obs)
    action = jax.random.normal(jax.random.PRNGKey(2), (32, trainer.env.action_size))
    np.testing.assert_allclose(
        mixture.mixture_log_prob(action, logits, mean, log_std),
        gaussian_log_prob(action, mean[:, 0], log_std[:, 0]),
        rtol=1e-6,
        atol=1e-6,
    )


def test_pmoe_ppo_stores_the_mixture_likelihood_of_the_action_it_samples():
    trainer, config = tiny_trainer("pmoe_ppo")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(
        actor_params=jax.tree.map(  # experts that differ from each other
            lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(5), p.shape), learner.actor_params
        )
    )
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, trainer.env.obs_size))
    action, extras = pmoe_ppo.sample(learner, obs, jax.random.PRNGKey(2), config)
    logits, mean, log_std = learner.actor.apply(learner.actor_params, obs)
    w = np.asarray(jax.nn.softmax(logits))
    per_expert = np.exp(np.asarray(gaussian_log_prob(action[:, None, :], mean, log_std)))
    np.testing.assert_allclose(extras["log_prob"], np.log((w * per_expert).sum(-1)), rtol=1e-4, atol=1e-5)
    assert config.num_experts == 5 and w.std(-1).max() > 1e-3


def test_mixture_density_integrates_to_one_and_is_the_logsumexp():
    logits = jnp.asarray([0.3, -1.0, 1.2])
    mean = jnp.asarray([[-2.0], [0.5], [1.5]])
    log_std = jnp.log(jnp.asarray([[0.4], [1.0], [0.3]]))
    grid = jnp.linspace(-8.0, 8.0, 8001)[:, None]
    log_p = mixture.mixture_log_prob(grid, logits, mean, log_std)
    np.testing.assert_allclose(np.trapezoid(np.exp(np.asarray(log_p)), np.asarray(grid[:, 0])), 1.0, rtol=1e-4)
    w = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum()
    x, mu, sd = np.asarray(grid), np.asarray(mean)[:, 0], np.exp(np.asarray(log_std))[:, 0]
    by_hand = np.log((w * np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))).sum(-1))
    np.testing.assert_allclose(log_p, by_hand, rtol=1e-5, atol=1e-5)
    far = mixture.mixture_log_prob(jnp.asarray([[60.0]]), logits, mean, log_std)  # the densities underflow
    assert np.isfinite(far).all()


def test_frequency_loss_gradient_is_its_closed_form():
    """L = (1/(BK)) Σ_s Σ_k (w_k − y_k)², ∂L/∂z_j = (2/(BK)) Σ_k (w_k − y_k) w_k (δ_kj − w_j)."""
    logits = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    best = jnp.asarray([0, 3, 1, 1, 2, 0])
    grad = jax.grad(mixture.frequency_loss)(logits, best)
    w, y = np.asarray(jax.nn.softmax(logits)), np.eye(4)[np.asarray(best)]
    jacobian = w[:, :, None] * (np.eye(4)[None] - w[:, None, :])  # ∂w_k/∂z_j
    closed = 2.0 / w.size * np.einsum("bk,bkj->bj", w - y, jacobian)
    np.testing.assert_allclose(grad, closed, rtol=1e-5, atol=1e-7)


def test_actor_gradient_reaches_only_the_best_experts_head():
    trainer, config = tiny_trainer("pmoe_sac")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    actor, critic = pmoe_sac.networks(trainer.env, config)
    obs = jax.random.normal(jax.random.PRNGKey(1), (1, trainer.env.obs_size))  # one state: one k*
    key, a = jax.random.PRNGKey(2), trainer.env.action_size
    usage = learner.last_usage
    grads, (_, metrics) = jax.grad(pmoe_sac.actor_loss, has_aux=True)(
        learner.actor_params, actor, critic, learner.critic_params, 0.5, obs, key, usage
    )
    best = int(np.argmax(np.asarray(metrics["expert_usage"])))
    head = np.asarray(grads["params"]["MLP_0"]["Dense_2"]["kernel"])  # [hidden, K * 2|A|]: expert k's block
    blocks = head.reshape(head.shape[0], config.num_experts, 2 * a)
    for k in range(config.num_experts):
        if k == best:
            assert np.abs(blocks[:, k]).max() > 0
        else:
            assert np.all(blocks[:, k] == 0.0), k


def test_all_experts_actions_go_through_the_critic_in_one_call():
    trainer, config = tiny_trainer("pmoe_sac")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    _, critic = pmoe_sac.networks(trainer.env, config)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, trainer.env.obs_size))
    actions = jax.random.uniform(jax.random.PRNGKey(2), (8, config.num_experts, trainer.env.action_size), minval=-1)
    q = pmoe_sac.expert_q_values(critic, learner.critic_params, obs, actions)
    assert q.shape == (8, config.num_experts)
    for k in range(config.num_experts):
        np.testing.assert_allclose(
            q[:, k], apply_ensemble(critic, learner.critic_params, obs, actions[:, k]).min(0), rtol=1e-5
        )

    def matmuls(fn, *args):
        return sum(e.primitive.name == "dot_general" for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns)

    one_action = matmuls(lambda o, a: apply_ensemble(critic, learner.critic_params, o, a), obs, actions[:, 0])
    assert one_action > 0
    assert (
        matmuls(lambda o, a: pmoe_sac.expert_q_values(critic, learner.critic_params, o, a), obs, actions) == one_action
    )


def test_expert_diagnostics_every_iteration():
    for name in ("pmoe_sac", "pmoe_ppo"):
        trainer, config = tiny_trainer(name)
        state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state
        state, metrics = jax.jit(lambda s: trainer.agent.iteration(s, trainer.env, config))(state)
        usage = np.asarray(metrics["expert_usage"])
        assert usage.shape == (config.num_experts,) and np.isclose(usage.sum(), 1.0)
        assert 0 < float(metrics["gate_entropy"]) <= np.log(config.num_experts) + 1e-6
        assert 0 <= float(metrics["k_star_change"]) <= 1 and 0 <= float(metrics["gate_disagreement"]) <= 1
        np.testing.assert_allclose(state.learner.last_usage, usage, rtol=1e-6)


def test_reward_standardisation_quirk_is_off_by_default_and_standardises_the_batch_when_on():
    trainer, config = tiny_trainer("pmoe_sac")
    assert config.standardize_batch_rewards is False
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    batch, key = random_batch(16, trainer.env.obs_size, trainer.env.action_size), jax.random.PRNGKey(1)
    step = lambda b, c: pmoe_sac.gradient_step(learner, b, key, trainer.env, c)[1]["critic_loss"]
    quirk = config.replace(standardize_batch_rewards=True)
    r = np.asarray(batch["reward"])
    standardised = {**batch, "reward": jnp.asarray((r - r.mean()) / (r.std(ddof=1) + 1e-6), jnp.float32)}
    np.testing.assert_allclose(step(batch, quirk), step(standardised, config), rtol=1e-5)
    assert not np.isclose(float(step(batch, quirk)), float(step(batch, config)))


def pmoe_ppo_minibatch(trainer, learner, n=48, seed=0):
    """A minibatch whose stored log-likelihoods sit around the current ones, so that ratios both inside
    and outside the clip range occur."""
    rng = np.random.default_rng(seed)
    obs = jnp.asarray(rng.normal(size=(n, trainer.env.obs_size)), jnp.float32)
    action = jnp.asarray(rng.normal(size=(n, trainer.env.action_size)), jnp.float32)
    logits, mean, log_std = learner.actor.apply(learner.actor_params, obs)
    log_prob = mixture.mixture_log_prob(action, logits, mean, log_std) + jnp.asarray(rng.normal(0, 0.3, n), jnp.float32)
    return {
        "obs": obs,
        "action": action,
        "log_prob": log_prob,
        "advantage": jnp.asarray(rng.normal(size=n), jnp.float32),
        "value": jnp.asarray(rng.normal(size=n), jnp.float32),
        "target": jnp.asarray(rng.normal(size=n), jnp.float32),
        "key": jax.random.PRNGKey(seed + 1),
    }


def test_pmoe_ppo_loss_is_the_mixture_ratio_surrogate_plus_value_q_regression_and_frequency_terms():
    """L = L_freq + L_clip + c_v L_V + L_Q, the ratio from the mixture's likelihood Σ_k w_k N(a; μ_k, σ_k)
    (computed here as a plain sum of densities), and Q_ψ regressed on the λ-return of the taken action."""
    trainer, config = tiny_trainer("pmoe_ppo")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(
        actor_params=jax.tree.map(  # experts and gate weights that differ from each other
            lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(5), p.shape), learner.actor_params
        )
    )
    batch = pmoe_ppo_minibatch(trainer, learner)
    params = (learner.actor_params, learner.value_params, learner.q_params)
    loss_fn = lambda p: pmoe_ppo.pmoe_ppo_loss(p, learner, batch, config, learner.last_usage)
    loss, info = loss_fn(params)

    logits, mean, log_std = (np.asarray(x, np.float64) for x in learner.actor.apply(learner.actor_params, batch["obs"]))
    a = np.asarray(batch["action"], np.float64)[:, None, :]
    density = np.exp(-0.5 * ((a - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).prod(-1)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    ratio = np.exp(np.log((w * density).sum(-1)) - np.asarray(batch["log_prob"], np.float64))
    assert (np.abs(ratio - 1) > config.clip_eps).any() and (np.abs(ratio - 1) < config.clip_eps).any()
    adv = np.asarray(batch["advantage"], np.float64)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    clip = np.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps)
    np.testing.assert_allclose(info["policy_loss"], -np.minimum(ratio * adv, clip * adv).mean(), rtol=1e-4, atol=1e-6)

    q_taken = np.asarray(learner.q_net.apply(learner.q_params, batch["obs"], batch["action"]), np.float64)
    q_loss = ((q_taken - np.asarray(batch["target"], np.float64)) ** 2).mean()
    np.testing.assert_allclose(info["q_loss"], q_loss, rtol=1e-5)
    np.testing.assert_allclose(
        loss, info["frequency_loss"] + info["policy_loss"] + config.vf_coef * info["value_loss"] + q_loss, rtol=1e-5
    )
    # Q_ψ learns from the regression alone (no gradient reaches it through the argmax of the frequency loss)
    q_grads = jax.grad(lambda q: loss_fn((params[0], params[1], q))[0])(learner.q_params)
    regression = jax.grad(
        lambda q: ((learner.q_net.apply(q, batch["obs"], batch["action"]) - batch["target"]) ** 2).mean()
    )(learner.q_params)
    for g, r in zip(jax.tree.leaves(q_grads), jax.tree.leaves(regression)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-7)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(q_grads)) > 0


# ------------------------------------------------- acting, evaluation, options and defaults (rule by rule)

GATE = np.array([0.5, -0.3, 0.0, 1.0])  # w = softmax: about 0.27, 0.12, 0.16, 0.45
MEANS = np.array([-1.5, -0.5, 0.5, 1.5])  # one action dimension (Pendulum), an expert each


def pinned_mixture(actor_params, log_std: float, head: str, std_param: bool):
    """Actor parameters whose output ignores the state: the gate's logits are GATE, expert k's mean is
    MEANS[k] and every log-std is `log_std` (a head bias for PMOE-SAC, the log-std parameter for PMOE-PPO)."""
    params = jax.tree.map(lambda x: x, actor_params)
    p = params["params"]
    p["gate"] = {"kernel": jnp.zeros_like(p["gate"]["kernel"]), "bias": jnp.asarray(GATE, jnp.float32)}
    layer = p["MLP_0"][head]
    if std_param:
        bias = MEANS[:, None]
        p["log_std"] = jnp.full_like(p["log_std"], log_std)
    else:
        bias = np.stack([MEANS, np.full(4, log_std)], -1)  # [K, 2|A|]: mean then log-std, per expert
    p["MLP_0"][head] = {"kernel": jnp.zeros_like(layer["kernel"]), "bias": jnp.asarray(bias.reshape(-1), jnp.float32)}
    return params


def nearest_expert(u):
    return np.abs(np.asarray(u)[:, :1] - MEANS[None, :]).argmin(-1)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_pmoe_sac_explores_with_k_drawn_from_the_gate_then_tanh_of_that_experts_gaussian_sample():
    trainer, config = tiny_trainer("pmoe_sac")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(actor_params=pinned_mixture(learner.actor_params, np.log(0.1), "Dense_2", False))
    obs = jnp.zeros((8000, trainer.env.obs_size))
    action = np.asarray(pmoe_sac.explore(learner, obs, jax.random.PRNGKey(1), config))
    assert np.abs(action).max() < 1
    u = np.arctanh(action)
    k = nearest_expert(u)
    np.testing.assert_allclose(np.bincount(k, minlength=4) / len(k), softmax(GATE), atol=0.02)
    for expert in range(4):
        noise = u[k == expert, 0] - MEANS[expert]
        assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.1) < 0.01


def test_pmoe_ppo_samples_k_from_the_gate_then_an_unsquashed_gaussian_from_that_expert():
    trainer, config = tiny_trainer("pmoe_ppo", num_experts=4)
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(actor_params=pinned_mixture(learner.actor_params, np.log(0.1), "Dense_2", True))
    obs = jnp.zeros((8000, trainer.env.obs_size))
    action, extras = pmoe_ppo.sample(learner, obs, jax.random.PRNGKey(1), config)
    a = np.asarray(action)
    k = nearest_expert(a)
    np.testing.assert_allclose(np.bincount(k, minlength=4)[:4] / len(k), softmax(GATE), atol=0.02)
    for expert in range(4):
        noise = a[k == expert, 0] - MEANS[expert]
        assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.1) < 0.01
    assert np.abs(a).max() > 1.5  # not squashed: the env clips


def per_expert(f, actions):
    """f(a_k) for each expert's action [B, K, |A|] one expert at a time -> [B, K]."""
    return np.stack([np.asarray(f(actions[:, k])) for k in range(actions.shape[1])], -1)


def test_deterministic_pmoe_sac_acts_with_tanh_of_the_mean_of_the_expert_eval_expert_names():
    trainer, config = tiny_trainer("pmoe_sac")
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state
    learner = state.learner.replace(
        actor_params=jax.tree.map(  # experts and gate that differ by state
            lambda p: p + 0.5 * jax.random.normal(jax.random.PRNGKey(5), p.shape), state.learner.actor_params
        )
    )
    obs = jax.random.normal(jax.random.PRNGKey(2), (256, trainer.env.obs_size))
    seen = offpolicy.normalizer(state)(obs)
    logits, mean, _ = learner.actor.apply(learner.actor_params, seen)
    min_q = per_expert(lambda a: apply_ensemble(learner.q_net, learner.critic_params, seen, a).min(0), jnp.tanh(mean))
    for choice, k in (("best_q", min_q.argmax(-1)), ("argmax", np.asarray(logits).argmax(-1))):
        act = pmoe_sac.act(
            state.replace(learner=learner),
            obs,
            jax.random.PRNGKey(3),
            config.replace(eval_expert=choice),
            deterministic=True,
        )
        np.testing.assert_allclose(
            act, np.tanh(np.take_along_axis(np.asarray(mean), k[:, None, None], 1)[:, 0]), rtol=1e-5, atol=1e-6
        )
    raw_best = per_expert(lambda a: apply_ensemble(learner.q_net, learner.critic_params, seen, a).min(0), mean)
    assert (raw_best.argmax(-1) != min_q.argmax(-1)).any()  # the critic is asked at the squashed means
    assert (min_q.argmax(-1) != np.asarray(logits).argmax(-1)).any()


def test_pmoe_sac_argmax_q_target_takes_the_expert_whose_next_action_the_target_critics_value_most():
    trainer, config = tiny_trainer("pmoe_sac", target_expert="argmax_q")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(
        actor_params=jax.tree.map(
            lambda p: p + 0.5 * jax.random.normal(jax.random.PRNGKey(5), p.shape), learner.actor_params
        ),
        target_params=jax.tree.map(
            lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(6), p.shape), learner.target_params
        ),
    )
    env, batch, key = (
        trainer.env,
        random_batch(64, trainer.env.obs_size, trainer.env.action_size),
        jax.random.PRNGKey(7),
    )
    actor, critic = pmoe_sac.networks(env, config)
    y = pmoe_sac.critic_target(actor, critic, learner.actor_params, learner.target_params, 0.3, batch, key, config)
    _, mean, log_std = actor.apply(learner.actor_params, batch["next_obs"])
    actions, log_probs = (np.asarray(x) for x in tanh_gaussian_sample(key, mean, log_std))
    next_q = per_expert(lambda a: apply_ensemble(critic, learner.target_params, batch["next_obs"], a).min(0), actions)
    k = next_q.argmax(-1)
    assert len(set(k)) > 1
    pick = lambda x: np.take_along_axis(x, k[:, None], 1)[:, 0]
    want = np.asarray(batch["reward"]) + config.gamma * (1 - np.asarray(batch["terminated"])) * (
        pick(next_q) - 0.3 * pick(log_probs)
    )
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_pmoe_defaults_are_the_specs():
    s = pmoe_sac.Config()
    assert (s.num_experts, s.target_expert, s.eval_expert, s.standardize_batch_rewards) == (
        4,
        "sample",
        "best_q",
        False,
    )
    assert (s.init_alpha, s.target_entropy_scale) == (1.0, 1.0)  # log α₀ = 0, target entropy −|A|
    trainer, config = tiny_trainer("pmoe_sac")
    actor = pmoe_sac.networks(trainer.env, config)[0]
    assert (actor.log_std_min, actor.log_std_max, actor.state_dependent_std) == (-20.0, 2.0, True)

    p = pmoe_ppo.Config()
    assert (p.num_experts, p.num_envs * p.rollout_length, p.num_epochs, p.num_minibatches) == (5, 2048, 10, 32)
    assert (p.anneal_lr, p.ent_coef, p.gamma, p.gae_lambda, p.q_hidden_sizes) == (False, 0.0, 0.99, 0.95, (64, 64, 64))
    trainer, config = tiny_trainer("pmoe_ppo", init_log_std=-0.7)
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    assert (
        learner.q_net.activation == "relu"
        and len(learner.q_params["params"]["MLP_0"]) == len(config.q_hidden_sizes) + 1
    )
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, trainer.env.obs_size))
    _, _, log_std = learner.actor.apply(learner.actor_params, obs)
    np.testing.assert_array_equal(log_std, np.full(log_std.shape, -0.7, np.float32))  # state-independent, as set
    with pytest.raises(ConfigError, match="ent_coef must be 0"):
        build(pmoe_ppo.Config, {"ent_coef": 0.01}, "pmoe_ppo")


def test_pmoe_ppo_frequency_loss_ranks_one_sampled_action_per_expert_by_q_psi_and_the_value_loss_is_clipped():
    trainer, config = tiny_trainer("pmoe_ppo")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(
        actor_params=jax.tree.map(
            lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(5), p.shape), learner.actor_params
        ),
        q_params=jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(6), p.shape), learner.q_params),
    )
    batch = pmoe_ppo_minibatch(trainer, learner)
    params = (learner.actor_params, learner.value_params, learner.q_params)
    _, info = pmoe_ppo.pmoe_ppo_loss(params, learner, batch, config, learner.last_usage)

    logits, mean, log_std = learner.actor.apply(learner.actor_params, batch["obs"])
    drawn = gaussian_sample(batch["key"], mean, log_std)  # one action per expert, the minibatch's key
    q = per_expert(lambda a: learner.q_net.apply(learner.q_params, batch["obs"], a), drawn)
    best = q.argmax(-1)
    w = softmax(np.asarray(logits, np.float64))
    np.testing.assert_allclose(info["frequency_loss"], ((w - np.eye(w.shape[-1])[best]) ** 2).mean(), rtol=1e-5)
    at_means = per_expert(lambda a: learner.q_net.apply(learner.q_params, batch["obs"], a), mean).argmax(-1)
    assert (best != at_means).any() and (best != w.argmax(-1)).any()

    v = np.asarray(learner.value_net.apply(learner.value_params, batch["obs"])[..., 0], np.float64)
    old, target = np.asarray(batch["value"], np.float64), np.asarray(batch["target"], np.float64)
    clipped = old + np.clip(v - old, -config.clip_eps, config.clip_eps)
    assert (clipped != v).any() and config.clip_value_loss
    np.testing.assert_allclose(
        info["value_loss"], 0.5 * np.maximum((v - target) ** 2, (clipped - target) ** 2).mean(), rtol=1e-5
    )


def numpy_surrogate(logits, mean, log_std, batch, clip_eps):
    """PPO's clipped surrogate with the mixture's likelihood as a plain sum of densities, in float64."""
    a = np.asarray(batch["action"], np.float64)[:, None, :]
    density = np.exp(-0.5 * ((a - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).prod(-1)
    ratio = np.exp(np.log((softmax(logits) * density).sum(-1)) - np.asarray(batch["log_prob"], np.float64))
    adv = np.asarray(batch["advantage"], np.float64)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return -np.minimum(ratio * adv, np.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv).mean()


def test_pmoe_ppo_gate_learns_from_the_surrogate_as_well_as_the_frequency_loss():
    """d L / d gate bias = d L_freq (k* held) + d L_clip, the second by central differences of the numpy
    surrogate: the mixture ratio passes the surrogate's gradient to the gate."""
    trainer, config = tiny_trainer("pmoe_ppo")
    learner = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent_state.learner
    learner = learner.replace(
        actor_params=jax.tree.map(
            lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(5), p.shape), learner.actor_params
        )
    )
    batch = pmoe_ppo_minibatch(trainer, learner)
    params = (learner.actor_params, learner.value_params, learner.q_params)
    total = jax.grad(lambda p: pmoe_ppo.pmoe_ppo_loss(p, learner, batch, config, learner.last_usage)[0])(params)
    logits, mean, log_std = (np.asarray(x, np.float64) for x in learner.actor.apply(learner.actor_params, batch["obs"]))
    drawn = gaussian_sample(batch["key"], jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32))
    best = per_expert(lambda a: learner.q_net.apply(learner.q_params, batch["obs"], a), drawn).argmax(-1)
    gate_logits = lambda bias: batch["obs"] @ learner.actor_params["params"]["gate"]["kernel"] + bias
    freq = jax.grad(lambda b: mixture.frequency_loss(gate_logits(b), jnp.asarray(best)))(
        learner.actor_params["params"]["gate"]["bias"]
    )
    eps, fd = 1e-6, []
    for k in range(logits.shape[-1]):
        step = eps * np.eye(logits.shape[-1])[k]
        fd.append(
            (
                numpy_surrogate(logits + step, mean, log_std, batch, config.clip_eps)
                - numpy_surrogate(logits - step, mean, log_std, batch, config.clip_eps)
            )
            / (2 * eps)
        )
    surrogate = np.asarray(total[0]["params"]["gate"]["bias"]) - np.asarray(freq)
    assert np.abs(fd).max() > 1e-3
    np.testing.assert_allclose(surrogate, fd, rtol=2e-3, atol=2e-5)


def test_mixture_diagnostics_and_evaluation_expert_by_hand():
    logits = jnp.asarray([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    best = jnp.asarray([2, 1, 0, 1])
    last = jnp.asarray([0.5, 0.5, 0.0])
    d = mixture.diagnostics(logits, best, last)
    w = softmax(np.asarray(logits, np.float64))
    np.testing.assert_allclose(d["gate_entropy"], -(w * np.log(w)).sum(-1).mean(), rtol=1e-6)
    np.testing.assert_allclose(d["expert_usage"], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(d["k_star_change"], 0.5 * (0.25 + 0.0 + 0.25))  # total variation
    np.testing.assert_allclose(d["gate_disagreement"], 0.25)  # row 1 only: k* is not the gate's argmax

    q = jnp.asarray([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0], [4.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(mixture.evaluation_expert(key, logits, "best_q", lambda: q), [1, 2, 0, 1])

    def never():
        raise AssertionError("the critic is only asked for best_q")

    np.testing.assert_array_equal(mixture.evaluation_expert(key, logits, "argmax", never), [2, 0, 0, 1])
    many = jnp.broadcast_to(jnp.asarray([0.5, -0.3, 0.0]), (8000, 3))
    drawn = np.asarray(mixture.evaluation_expert(key, many, "sample", never))
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / 8000, softmax(np.asarray([0.5, -0.3, 0.0])), atol=0.02)
