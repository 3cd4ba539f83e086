"""The diagonal-Gaussian policy with a state-independent log-std beside a separate value network
(stable-baselines' and CleanRL's continuous-action MlpPolicy), shared by PPO, MDPO-on, PG-Rainbow and N-HARPG
(its actor only) and PMOE-PPO's value network; PPO may instead take Brax's tanh-squashed Gaussian
(`policy = "tanh_gaussian"`). Their learners keep the networks as `actor` and `value_net` and the
parameters as `actor_params` and `value_params`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax import onpolicy
from pgjax.distributions import (
    gaussian_entropy,
    gaussian_log_prob,
    gaussian_sample,
    log_one_minus_tanh_sq,
    tanh_gaussian_log_prob,
)
from pgjax.envs import Env
from pgjax.networks import MLP, GaussianActor, SoftplusTanhGaussianActor

POLICIES = ("gaussian", "tanh_gaussian")


def networks(
    env: Env,
    hidden_sizes: tuple[int, ...],
    activation: str,
    *,
    value_hidden_sizes: tuple[int, ...] = (),
    kernel_init: str = "orthogonal",
    squashed: bool = False,
) -> tuple[GaussianActor | SoftplusTanhGaussianActor, MLP]:
    """The policy (mean head scaled 0.01 at init; Brax's tanh-squashed one where `squashed`) and the value
    network (head scaled 1), on `value_hidden_sizes` where given, else on the policy's widths."""
    if squashed:
        actor = SoftplusTanhGaussianActor(hidden_sizes, env.action_size, activation, kernel_init)
    else:
        actor = GaussianActor(hidden_sizes, env.action_size, activation, weight_init=kernel_init)
    return actor, MLP(value_hidden_sizes or hidden_sizes, 1, activation, out_scale=1.0, weight_init=kernel_init)


def init_params(key: jax.Array, env: Env, actor, value_net, init_log_std) -> tuple[dict, dict]:
    """(actor params with log-std = init_log_std where the std is a parameter, value params), independently
    initialised."""
    k_actor, k_value = jax.random.split(key)
    dummy = jnp.zeros((1, env.obs_size))
    actor_params = actor.init(k_actor, dummy)
    if not actor.squashed:
        actor_params["params"]["log_std"] = jnp.full((env.action_size,), init_log_std)
    return actor_params, value_net.init(k_value, dummy)


def sample(learner, obs: jax.Array, key: jax.Array, config) -> tuple[jax.Array, dict]:
    """An action and its log-density, for the rollout: the unbounded Gaussian sample (the env clips
    it), or tanh of it (kept as "raw_action": the ratio's log-densities are taken at it)."""
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    u = gaussian_sample(key, mean, log_std)
    if learner.actor.squashed:
        return jnp.tanh(u), {"log_prob": tanh_gaussian_log_prob(u, mean, log_std), "raw_action": u}
    return u, {"log_prob": gaussian_log_prob(u, mean, log_std)}


def log_prob(actor, mean: jax.Array, log_std: jax.Array, batch: dict) -> jax.Array:
    """The log-density of the batch's actions under (mean, log_std)."""
    if actor.squashed:
        return tanh_gaussian_log_prob(batch["raw_action"], mean, log_std)
    return gaussian_log_prob(batch["action"], mean, log_std)


def entropy(actor, mean: jax.Array, log_std: jax.Array, key: jax.Array) -> jax.Array:
    """The Gaussian's entropy; squashed, Brax's one-sample estimate of the tanh-Gaussian's, which adds
    log |d tanh(u)/du| at a fresh sample u."""
    h = gaussian_entropy(log_std)
    if actor.squashed:
        h = h + jnp.sum(log_one_minus_tanh_sq(gaussian_sample(key, mean, log_std)), axis=-1)
    return h


def value(learner, obs: jax.Array, config) -> jax.Array:
    return learner.value_net.apply(learner.value_params, obs)[..., 0]


def act(state: onpolicy.State, obs: jax.Array, key: jax.Array, config, *, deterministic: bool = False) -> jax.Array:
    """The agent contract's `act`: the mean when deterministic, else a sample (squashed by tanh where the
    policy is, otherwise clipped by the env)."""
    actor = state.learner.actor
    mean, log_std = actor.apply(state.learner.actor_params, onpolicy.normalizer(state)(obs))
    action = mean if deterministic else gaussian_sample(key, mean, log_std)
    return jnp.tanh(action) if actor.squashed else action
