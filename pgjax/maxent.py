"""Pieces shared by the maximum-entropy actor-critics whose policy is a tanh-squashed Gaussian
(SAC, DSAC-T): their learners keep the policy network as `actor` and its parameters as
`actor_params`, and tune the temperature α toward a target entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from pgjax import offpolicy
from pgjax.distributions import tanh_gaussian_sample
from pgjax.networks import init_ensemble


def init_actor_and_twin_critics(key: jax.Array, actor, critic, obs_size: int, action_size: int):
    """(actor params, twin critic params stacked on a leading axis of 2), independently initialised."""
    k_actor, k_critic = jax.random.split(key)
    obs, action = jnp.zeros((1, obs_size)), jnp.zeros((1, action_size))
    return actor.init(k_actor, obs), init_ensemble(critic, k_critic, 2, obs, action)


def explore(learner, obs: jax.Array, key: jax.Array, config) -> jax.Array:
    """a = tanh(u), u ~ N(μ(s), σ(s)²): the exploration policy (obs already normalised)."""
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    return tanh_gaussian_sample(key, mean, log_std)[0]


def act(state: offpolicy.State, obs: jax.Array, key: jax.Array, config, *, deterministic: bool = False) -> jax.Array:
    """The agent contract's `act`: tanh(μ(s)) when deterministic, else a sample."""
    obs = offpolicy.normalizer(state)(obs)
    if deterministic:
        return jnp.tanh(state.learner.actor.apply(state.learner.actor_params, obs)[0])
    return explore(state.learner, obs, key, config)


def target_entropy(action_size: int, config) -> float:
    """H̄ = -scale · |A|."""
    return -config.target_entropy_scale * action_size


TEMPERATURE_LOSSES = ("log_alpha", "alpha")


def temperature_loss(log_alpha, log_prob, target_entropy):
    """L(log α) = -log α · mean(sg(log π) + H̄): α falls while the entropy exceeds H̄, rises below it."""
    return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


def temperature_loss_on_alpha(log_alpha, log_prob, target_entropy):
    """Brax's form, L(log α) = -α · mean(sg(log π) + H̄): the same direction, its gradient scaled by α."""
    return -(jnp.exp(log_alpha) * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


def optimizers(config):
    """Adam for the actor, the critics and the temperature, at the config's three learning rates."""
    return optax.adam(config.actor_lr), optax.adam(config.critic_lr), optax.adam(config.alpha_lr)
