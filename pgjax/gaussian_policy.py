"""The diagonal-Gaussian policy with a state-independent log-std beside a separate value network
(stable-baselines' and CleanRL's continuous-action MlpPolicy), shared by PPO and MDPO-on. Their
learners keep the networks as `actor` and `critic` and the parameters as `actor_params` and
`critic_params`."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax import onpolicy
from pgjax.distributions import gaussian_log_prob, gaussian_sample
from pgjax.envs import Env
from pgjax.networks import MLP, GaussianActor


def networks(env: Env, config) -> tuple[GaussianActor, MLP]:
    """The policy (mean head scaled 0.01 at init) and the value network (head scaled 1)."""
    return (GaussianActor(config.hidden_sizes, env.action_size, config.activation),
            MLP(config.hidden_sizes, 1, config.activation, out_scale=1.0))


def init_params(key: jax.Array, env: Env, config) -> tuple[dict, dict]:
    """(actor params with log-std = config.init_log_std, critic params), independently initialised."""
    actor, critic = networks(env, config)
    k_actor, k_critic = jax.random.split(key)
    dummy = jnp.zeros((1, env.obs_size))
    actor_params = actor.init(k_actor, dummy)
    actor_params["params"]["log_std"] = jnp.full((env.action_size,), config.init_log_std)
    return actor_params, critic.init(k_critic, dummy)


def sample(learner, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """An unbounded Gaussian action (the env clips it) and its log-density, for the rollout."""
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    action = gaussian_sample(key, mean, log_std)
    return action, {"log_prob": gaussian_log_prob(action, mean, log_std)}


def value(learner, obs: jax.Array) -> jax.Array:
    return learner.critic.apply(learner.critic_params, obs)[..., 0]


def act(state: onpolicy.State, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    """The agent contract's `act`: the mean when deterministic, else a sample (the env clips it)."""
    mean, log_std = state.learner.actor.apply(state.learner.actor_params, onpolicy.normalizer(state)(obs))
    return mean if deterministic else gaussian_sample(key, mean, log_std)
