import jax
import jax.numpy as jnp
import numpy as np

from pgjax.agents import sac
from pgjax.distributions import tanh_gaussian_sample
from pgjax.networks import apply_ensemble
from helpers import tiny_trainer


def test_critic_target_bootstraps_through_truncation_not_termination():
    trainer, config = tiny_trainer("sac")
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent.learner
    actor, critic = sac._networks(trainer.env, config)
    rng = np.random.default_rng(0)
    n = 4
    batch = {"obs": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
             "action": jnp.zeros((n, 1)), "reward": jnp.asarray([1.0, -2.0, 0.5, 3.0]),
             # rows 0, 1: a truncated step (not terminated; next_obs is the real final observation);
             # rows 2, 3: a terminated step
             "terminated": jnp.asarray([0.0, 0.0, 1.0, 1.0]),
             "next_obs": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)}
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
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), config).agent
    items = jax.tree.map(lambda x: np.asarray(x)[0, :400], state.buffer.experience)
    # warm-up: 2 envs x 200 steps = exactly one Pendulum episode each, so the last item of each env
    # is its time-limit step; its next_obs must not be the obs the next episode starts from
    last = items["next_obs"][-2:]
    assert not np.any(items["terminated"])
    fresh = np.asarray(state.env_state.obs)
    assert not np.allclose(last, fresh)
    np.testing.assert_allclose(items["next_obs"][:-2], np.asarray(
        [items["obs"][i + 2] for i in range(398)]), rtol=1e-6)  # next_obs == following obs elsewhere


def test_temperature_moves_toward_target_entropy():
    """L(log α) = -log α (log π + H̄), H̄ = -|A|: α falls when entropy exceeds -|A|, rises below it."""
    target = -1.0  # one action dimension
    high_entropy = jnp.full((8,), -3.0)  # entropy 3 > -1
    low_entropy = jnp.full((8,), 2.0)  # entropy -2 < -1
    grad = jax.grad(sac.temperature_loss)
    np.testing.assert_allclose(grad(0.0, high_entropy, target), 4.0)  # descent lowers log α
    np.testing.assert_allclose(grad(0.0, low_entropy, target), -1.0)  # descent raises log α
