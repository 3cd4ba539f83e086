"""PPO and the on-policy loop it shares with MDPO-on, PMOE-PPO and PG-Rainbow, each rule against
values derived by hand: the clipped surrogate, per-minibatch advantage normalisation, the clipped
value loss, the loss's entropy sign, the log-density of the unclipped sample, the initialisation, the
global-norm clip and Adam's epsilon, the running observation and reward statistics, and the loop's
wiring of GAE (bootstrapping through a time limit from the pre-reset observation)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from helpers import tiny_config
from scipy import stats
from test_returns import brute_force_gae

from pgjax import gaussian_policy, onpolicy
from pgjax.agents import ppo
from pgjax.envs import make
from pgjax.normalize import RewardScaler, RunningStats

ENV = "gymnax/Pendulum-v1"


def config(**overrides):
    return tiny_config("ppo", **overrides)


def learner(**overrides):
    env = make(ENV)
    return ppo.init_learner(jax.random.PRNGKey(0), env, config(**overrides)), env


# ---------------------------------------------------------------- the losses


def test_clipped_surrogate_is_the_pessimistic_bound_on_minibatch_normalised_advantages():
    """L_clip = -mean(min(ρÂ, clip(ρ, 1-ε, 1+ε)Â)) with Â standardised within the minibatch: for Â > 0
    the ratio counts up to 1+ε, for Â < 0 down to 1-ε; ρ = π_new/π_old; the approximate KL is
    mean((ρ-1) - log ρ). Written per element as the pessimistic bound, not as the code's min."""
    eps = 0.2
    ratio = np.array([1.5, 1.5, 0.5, 0.5, 1.1, 0.9, 1.0, 0.7])
    adv = np.array([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, 4.0])  # mean 0.875: not already centred
    norm = (adv - adv.mean()) / (adv.std() + 1e-8)
    expected = -np.mean([a * (min(r, 1 + eps) if a > 0 else max(r, 1 - eps)) for r, a in zip(ratio, norm)])
    old = np.linspace(-2.0, 1.0, 8)  # any old log-densities: only the difference matters
    batch = {"log_prob": jnp.asarray(old, jnp.float32), "advantage": jnp.asarray(adv, jnp.float32)}
    loss, kl = ppo.clipped_surrogate(jnp.asarray(old + np.log(ratio), jnp.float32), batch, eps)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(kl, np.mean((ratio - 1) - np.log(ratio)), rtol=1e-4)
    # the gradient reaches exactly the samples whose ratio is not clipped in the pessimistic direction
    grad = np.asarray(
        jax.grad(lambda lp: ppo.clipped_surrogate(lp, batch, eps)[0])(jnp.asarray(old + np.log(ratio), jnp.float32))
    )
    clipped = np.array([(a > 0 and r > 1 + eps) or (a < 0 and r < 1 - eps) for r, a in zip(ratio, norm)])
    np.testing.assert_allclose(grad[clipped], 0.0)
    np.testing.assert_allclose(grad[~clipped], -(ratio * norm)[~clipped] / 8, rtol=1e-5)


def test_advantages_are_standardised_with_the_population_std():
    adv = jnp.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(
        onpolicy.normalize_advantages(adv), (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25), rtol=1e-6
    )


def test_clipped_value_loss_takes_the_larger_of_the_clipped_and_unclipped_errors():
    """L_V = 0.5·mean(max((V-R)², (V_old + clip(V-V_old, -ε, ε) - R)²)), ε = 0.2, element by element:
    (1) V moved +0.5 toward R: clipped to 0.7, error 1.69 > 1; (2) moved -0.5 toward R: 1.3, 1.69 > 1;
    (3) not moved: 1; (4) moved 0.05, inside the clip: 0.25; (5) moved +3 past R: the unclipped 4 > 0.64."""
    value = jnp.array([1.0, 1.0, 0.0, 0.5, 3.0])
    old = jnp.array([0.5, 1.5, 0.0, 0.45, 0.0])
    target = jnp.array([2.0, 0.0, 1.0, 0.0, 1.0])
    batch = {"value": old, "target": target}
    np.testing.assert_allclose(
        ppo.value_loss(value, batch, config()), 0.5 * (1.69 + 1.69 + 1 + 0.25 + 4) / 5, rtol=1e-5
    )
    np.testing.assert_allclose(
        ppo.value_loss(value, batch, config(clip_value_loss=False)), 0.5 * (1 + 1 + 1 + 0.25 + 4) / 5, rtol=1e-5
    )


def test_ppo_loss_adds_the_weighted_value_loss_and_subtracts_the_entropy_bonus():
    """At ρ ≡ 1 with V_old = V the surrogate is -mean(standardised Â) = 0 and the value loss is
    0.5·mean((V - R)²), so L = c_v·0.5·mean(δ²) - c_e·|A|·(log σ + ½(1 + log 2π)), log σ = 0 at init."""
    state, env = learner()
    cfg = config(ent_coef=0.05, vf_coef=0.7)
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, env.obs_size))
    action, extras = gaussian_policy.sample(state, obs, jax.random.PRNGKey(2), cfg)
    value = gaussian_policy.value(state, obs, cfg)
    delta = jnp.linspace(-1.0, 2.0, 16)
    batch = {
        "obs": obs,
        "action": action,
        **extras,
        "value": value,
        "target": value + delta,
        "advantage": jax.random.normal(jax.random.PRNGKey(3), (16,)),
    }
    loss, info = ppo.ppo_loss((state.actor_params, state.value_params), state.actor, state.value_net, batch, cfg)
    entropy = env.action_size * 0.5 * (1.0 + np.log(2 * np.pi))
    np.testing.assert_allclose(info["entropy"], entropy, rtol=1e-6)
    np.testing.assert_allclose(info["policy_loss"], 0.0, atol=1e-6)
    np.testing.assert_allclose(loss, 0.7 * 0.5 * np.mean(np.asarray(delta) ** 2) - 0.05 * entropy, rtol=1e-5, atol=1e-6)


def test_the_rollout_stores_the_log_density_of_the_unclipped_sample():
    """Actions are clipped only by the env: the stored action is the raw Gaussian sample (here often
    beyond ±1, σ = e²) and its stored log-density is the Gaussian's at that raw value."""
    state, env = learner(init_log_std=2.0)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, env.obs_size))
    action, extras = gaussian_policy.sample(state, obs, jax.random.PRNGKey(2), config())
    assert np.mean(np.abs(action) > 1.0) > 0.5
    mean, _ = state.actor.apply(state.actor_params, obs)
    expected = stats.norm.logpdf(np.asarray(action), np.asarray(mean), np.exp(2.0)).sum(-1)
    np.testing.assert_allclose(extras["log_prob"], expected, rtol=1e-5)


def test_initialisation_is_orthogonal_with_the_scales_of_the_implementation_details():
    """Hidden layers orthogonal × √2, policy head × 0.01, value head × 1, zero biases, log σ = 0, and
    the actor and the critic are separate networks."""
    state, env = learner()

    def dense_layers(params):
        out = []
        for name, sub in sorted(params.items()):
            out += [sub] if name.startswith("Dense") else dense_layers(sub) if isinstance(sub, dict) else []
        return out

    actor_layers = dense_layers(state.actor_params["params"])
    critic_layers = dense_layers(state.value_params["params"])
    assert len(actor_layers) == len(critic_layers) == 3
    for layers, head_scale in [(actor_layers, 0.01), (critic_layers, 1.0)]:
        for layer, scale in zip(layers, [np.sqrt(2.0), np.sqrt(2.0), head_scale]):
            k = np.asarray(layer["kernel"])
            small = k @ k.T if k.shape[0] <= k.shape[1] else k.T @ k
            np.testing.assert_allclose(small, scale**2 * np.eye(small.shape[0]), atol=1e-5 * max(1, scale**2))
            np.testing.assert_array_equal(layer["bias"], 0.0)
    np.testing.assert_array_equal(state.actor_params["params"]["log_std"], np.zeros(env.action_size))
    assert not np.allclose(actor_layers[0]["kernel"], critic_layers[0]["kernel"])


def adam_by_hand(grads, lr, eps, b1=0.9, b2=0.999):
    """Adam's bias-corrected updates, step by step."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        out.append(-lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
    return out


def test_optimizer_clips_the_global_gradient_norm_then_takes_adam_steps_with_epsilon_1e_5():
    cfg = config(anneal_lr=False, lr=0.1, max_grad_norm=0.5)
    opt = ppo.optimizer(cfg)
    # global clip: [3, 4] (norm 5) becomes [0.3, 0.4], the direction kept; Adam's second step shows it
    grads = [np.array([3.0, 4.0]), np.array([0.1, 0.1])]
    clipped = [grads[0] * 0.5 / 5.0, grads[1]]
    state, params = opt.init(jnp.zeros(2)), jnp.zeros(2)
    for g, expected in zip(grads, adam_by_hand(clipped, 0.1, 1e-5)):
        updates, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
        np.testing.assert_allclose(updates, expected, rtol=1e-4)
    # epsilon 1e-5: a gradient of that size gets half a step (1e-8 would give almost a whole one)
    updates, _ = opt.update(jnp.array([1e-5, 2e-5]), opt.init(jnp.zeros(2)), jnp.zeros(2))
    np.testing.assert_allclose(updates, -0.1 * np.array([0.5, 2.0 / 3.0]), rtol=1e-4)


# ---------------------------------------------------------------- running statistics


def test_running_observation_statistics_equal_those_of_all_data_seen():
    rng = np.random.default_rng(0)
    first, second = rng.normal(1.0, 2.0, (50, 3)), rng.normal(-3.0, 0.5, (70, 3))
    s = RunningStats.create((3,)).update(jnp.asarray(first, jnp.float32)).update(jnp.asarray(second, jnp.float32))
    both = np.concatenate([first, second])
    np.testing.assert_allclose(s.mean, both.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.var, both.var(0), rtol=1e-3)
    np.testing.assert_allclose(s.count, 120, rtol=1e-5)
    x = jnp.array([[0.0, 0.0, 0.0], [1e3, -1e3, 0.0]])
    expected = np.clip((np.asarray(x) - np.asarray(s.mean)) / np.sqrt(np.asarray(s.var) + 1e-8), -10, 10)
    np.testing.assert_allclose(s.normalize(x), expected, rtol=1e-5)
    assert np.asarray(s.normalize(x))[1, 0] == 10.0 and np.asarray(s.normalize(x))[1, 1] == -10.0


def test_reward_scaler_tracks_the_discounted_return_and_divides_by_its_std():
    """γ = 0.9. Env 0: rewards 1, 2, 3, 4, an episode ends at step 1 → returns 1, 2.9, 3, 6.7. Env 1:
    carries 2 from the previous rollout, rewards 1 each → 2.8, 3.52, 4.168, 4.7512. The scale is
    1/std of these returns (the rewards are not centred) and the result is clipped to ±10."""
    scaler = RewardScaler.create(2).replace(discounted_return=jnp.array([0.0, 2.0]))
    rewards = jnp.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    dones = jnp.array([[False, False], [True, False], [False, False], [False, False]])
    scaler = scaler.update(rewards, dones, 0.9)
    returns = np.array([1.0, 2.9, 3.0, 6.7, 2.8, 3.52, 4.168, 4.7512])
    np.testing.assert_allclose(scaler.discounted_return, [6.7, 4.7512], rtol=1e-5)
    np.testing.assert_allclose(scaler.stats.mean, returns.mean(), rtol=1e-4)
    np.testing.assert_allclose(scaler.stats.var, returns.var(), rtol=1e-3)
    std = returns.std()
    np.testing.assert_allclose(scaler.scale(jnp.array([2.0, -1.0, 1e4])), [2.0 / std, -1.0 / std, 10.0], rtol=1e-3)


# ---------------------------------------------------------------- the loop's wiring


def capture(learner, batch, key, env, config):
    return learner, batch  # the "update" hands the loop's batch back as its metrics


def loop_value(learner, obs, config=None):
    return jnp.sin(obs).sum(-1) + 0.1 * obs[..., 2] ** 2  # any fixed V that tells states apart


@functools.cache
def one_loop_iteration(scale_rewards, **brax_choices):
    """One on-policy iteration of 2 Pendulum envs × 201 steps (a time limit at step 200, index 199),
    from observation statistics that are not the identity."""
    env = make(ENV)
    cfg = config(
        num_envs=2, rollout_length=201, num_minibatches=1, total_steps=402, scale_rewards=scale_rewards, **brax_choices
    )
    state = ppo.agent.init(jax.random.PRNGKey(0), env, cfg)
    prior = RunningStats(jnp.array([0.1, -0.2, 0.5]), jnp.array([0.5, 2.0, 4.0]), jnp.asarray(10.0))
    state = state.replace(obs_stats=prior)
    new, batch = jax.jit(lambda s: onpolicy.iteration(s, env, cfg, gaussian_policy.sample, loop_value, capture))(state)
    batch = jax.tree.map(lambda x: np.asarray(x).reshape((201, 2) + x.shape[1:]), batch)
    return cfg, state, new, batch, prior


def test_loop_bootstraps_a_time_limit_from_the_pre_reset_observation_and_normalises_before_learning():
    """GAE over the batch equals the brute-force sum with a truncation (not a termination) at the time
    limit, V(s') taken at the pre-reset observation; observations are normalised with the statistics
    the policy acted on, which then learn from the raw observations; unscaled rewards stay raw."""
    cfg, state, new, batch, prior = one_loop_iteration(scale_rewards=False)
    sd, mean = np.sqrt(np.asarray(prior.var) + 1e-8), np.asarray(prior.mean)
    raw, raw_next = batch["obs"] * sd + mean, batch["next_obs"] * sd + mean
    np.testing.assert_allclose(raw[0], state.env_state.obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(raw_next[:199], raw[1:200], rtol=1e-5, atol=1e-5)
    assert np.abs(raw_next[199] - raw[200]).max() > 1e-2  # the pre-reset observation, not the reset one
    assert not batch["terminated"].any()
    trunc = np.zeros(201, bool)
    trunc[199] = True
    term = np.zeros(201, bool)
    values, next_values = np.asarray(loop_value(None, batch["obs"])), np.asarray(loop_value(None, batch["next_obs"]))
    np.testing.assert_allclose(batch["value"], values, rtol=1e-5, atol=1e-6)
    for n in range(2):
        expected = brute_force_gae(
            batch["reward"][:, n], values[:, n], next_values[:, n], term, trunc, cfg.gamma, cfg.gae_lambda
        )
        np.testing.assert_allclose(batch["advantage"][:, n], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(batch["target"][:, n], expected + values[:, n], rtol=1e-4, atol=1e-4)
    # the statistics, after the update, merge the prior with the raw observations of the rollout
    flat = raw.reshape(-1, 3)
    total = 10.0 + flat.shape[0]
    np.testing.assert_allclose(new.obs_stats.count, total, rtol=1e-6)
    np.testing.assert_allclose(new.obs_stats.mean, (10.0 * mean + flat.sum(0)) / total, rtol=1e-4, atol=1e-5)
    # raw Pendulum rewards: -(θ² + 0.1 θ̇² + 0.001 u²) <= 0 and down to about -16
    assert (batch["reward"] <= 0).all() and batch["reward"].min() < -1.0


def test_loop_scales_rewards_by_the_updated_running_return_std_before_gae():
    cfg, _, _, raw_batch, _ = one_loop_iteration(scale_rewards=False)
    _, state, new, batch, _ = one_loop_iteration(scale_rewards=True)
    raw = raw_batch["reward"]  # the same trajectory: the policy does not depend on the rewards
    done = np.zeros((201, 2), bool)
    done[199] = True
    expected_scaler = state.reward_scaler.update(jnp.asarray(raw), jnp.asarray(done), cfg.gamma)
    np.testing.assert_allclose(new.reward_scaler.stats.var, expected_scaler.stats.var, rtol=1e-5)
    np.testing.assert_allclose(batch["reward"], raw / np.sqrt(float(expected_scaler.stats.var) + 1e-8), rtol=1e-4)
    assert abs(float(expected_scaler.stats.var) - 1.0) > 0.5  # scaling by the old (unit) std would show
    values, next_values = np.asarray(loop_value(None, batch["obs"])), np.asarray(loop_value(None, batch["next_obs"]))
    expected = brute_force_gae(
        batch["reward"][:, 0],
        values[:, 0],
        next_values[:, 0],
        np.zeros(201, bool),
        done[:, 0],
        cfg.gamma,
        cfg.gae_lambda,
    )
    np.testing.assert_allclose(batch["advantage"][:, 0], expected, rtol=1e-4, atol=1e-4)
