"""SAC with automatic temperature (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv 1812.05905), read next to its Algorithm 1.

On the shared off-policy loop (`pgjax.offpolicy`: act with a ~ π(·|s), store, sample, normalise),
each gradient step (the three updates in `pgjax.sac_core`, shared with PMOE-SAC) moves twin soft
Q-functions toward r + γ(1-d)(min_j Q̄_j(s',a') - α log π(a'|s')),
the reparameterised actor toward min_j Q_j - α log π, the temperature toward the target entropy -|A|,
and Polyak-averages the target critics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax import maxent, offpolicy
from pgjax.distributions import tanh_gaussian_sample
from pgjax.envs import Env
from pgjax.networks import QNetwork, SoftplusTanhGaussianActor, SquashedGaussianActor, apply_ensemble
from pgjax.sac_core import (
    Config,
    Learner,
    actor_update,
    critic_update,
    critics_for_the_actor,
    soft_actor_critic_learner,
    soft_target,
    step_metrics,
    stepped_learner,
    temperature_update,
)

explore, act = maxent.explore, maxent.act


def networks(env: Env, config: Config):
    """(actor, Q network): the tanh-Gaussian policy with a clamped log-std (or Brax's softplus std)."""
    init = config.kernel_init
    if config.policy_std == "softplus":
        actor = SoftplusTanhGaussianActor(config.hidden_sizes, env.action_size, config.activation, weight_init=init)
    else:
        actor = SquashedGaussianActor(config.hidden_sizes, env.action_size, config.activation, weight_init=init)
    return actor, QNetwork(config.hidden_sizes, config.activation, config.critic_layer_norm, weight_init=init)


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    return soft_actor_critic_learner(key, networks(env, config), env, config)


def critic_target(actor, q_net, actor_params, target_params, alpha, batch, key, config: Config):
    """The soft target with a' ~ π(·|s')."""
    mean, log_std = actor.apply(actor_params, batch["next_obs"])
    next_action, next_log_prob = tanh_gaussian_sample(key, mean, log_std)
    return soft_target(q_net, target_params, next_action, next_log_prob, alpha, batch, config)


def actor_loss(actor_params, actor, q_net, critic_params, alpha, obs, key):
    """mean(α log π(ã|s) - min_j Q_j(s, ã)), ã reparameterised; aux: (log π(ã|s), no extra metrics)."""
    mean, log_std = actor.apply(actor_params, obs)
    action, log_prob = tanh_gaussian_sample(key, mean, log_std)
    q = apply_ensemble(q_net, critic_params, obs, action).min(0)
    return (alpha * log_prob - q).mean(), (log_prob, {})


def gradient_step(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """One gradient step of Algorithm 1, α held at its value at the step's start: the critics toward the
    soft target, the actor on the critics, the temperature, then the Polyak targets."""
    actor, q_net = learner.actor, learner.q_net
    target_key, actor_key = jax.random.split(key)
    alpha = jnp.exp(learner.log_alpha)

    target = critic_target(actor, q_net, learner.actor_params, learner.target_params, alpha, batch, target_key, config)
    critic_params, critic_opt, critic_metrics = critic_update(learner, batch, target, config)
    actor_critics = critics_for_the_actor(learner, critic_params, config)
    actor_params, actor_opt, log_prob, pi_loss, extra = actor_update(
        learner, lambda p: actor_loss(p, actor, q_net, actor_critics, alpha, batch["obs"], actor_key), config
    )
    log_alpha, alpha_opt = temperature_update(learner, log_prob, env, config)

    new = stepped_learner(
        learner, (critic_params, critic_opt), (actor_params, actor_opt), (log_alpha, alpha_opt), config
    )
    return new, step_metrics(critic_metrics, pi_loss, alpha, log_prob, extra)


agent = offpolicy.agent(Config=Config, init_learner=init_learner, explore=explore, gradient_step=gradient_step, act=act)
