"""SAC with automatic temperature (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv 1812.05905), read next to its Algorithm 1.

Each iteration steps `num_envs` environments once with a ~ π(·|s) and stores the transitions
(the next observation is the true pre-reset one, and only true terminations stop the bootstrap),
then takes `gradient_steps` updates on uniform minibatches from the replay buffer:
twin soft Q-functions toward r + γ(1-d)(min_j Q̄_j(s',a') - α log π(a'|s')), the reparameterised
actor toward min_j Q_j - α log π, the temperature toward the target entropy -|A|, and Polyak
averaging of the target critics. The first `warmup_steps` steps use uniform random actions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax.config import check_positive, check_unit_interval, hyper, require, static
from pgjax.distributions import tanh_gaussian_sample
from pgjax.envs import Env, EnvState, batch_reset
from pgjax.networks import QNetwork, SquashedGaussianActor, apply_ensemble, init_ensemble, polyak
from pgjax.normalize import RunningStats
from pgjax.replay import as_items, buffer_capacity, make_buffer, replay_budget_problems, transition_item
from pgjax.rollout import env_step, rollout, uniform_policy


@struct.dataclass
class Config:
    total_steps: int = static(100_000)
    num_envs: int = static(1)
    gradient_steps: int = static(1)  # per iteration, i.e. per num_envs env steps
    batch_size: int = static(256)
    buffer_size: int = static(1_000_000)
    warmup_steps: int = static(5_000)
    hidden_sizes: tuple[int, ...] = static((256, 256))
    activation: str = static("relu")
    normalize_observations: bool = static(False)
    actor_lr: float = hyper(3e-4)
    critic_lr: float = hyper(3e-4)
    alpha_lr: float = hyper(3e-4)
    gamma: float = hyper(0.99)
    tau: float = hyper(0.005)
    init_alpha: float = hyper(1.0)
    target_entropy_scale: float = hyper(1.0)  # target entropy = -scale * |A|
    reward_scale: float = hyper(1.0)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_positive(out, self, "total_steps", "num_envs", "gradient_steps", "batch_size", "buffer_size",
                       "actor_lr", "critic_lr", "alpha_lr", "init_alpha", "reward_scale")
        check_unit_interval(out, self, "gamma", "tau")
        require(out, all(h > 0 for h in self.hidden_sizes), "hidden_sizes must be positive")
        require(out, self.warmup_steps >= 0, f"warmup_steps must be >= 0 (got {self.warmup_steps})")
        return out + replay_budget_problems(self)


@struct.dataclass
class State:
    actor_params: dict
    critic_params: dict  # twin critics stacked on a leading axis of 2
    target_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    buffer: object
    obs_stats: RunningStats
    env_state: EnvState
    key: jax.Array
    actor: SquashedGaussianActor = static(None)
    normalize_observations: bool = static(False)


def steps_per_iteration(config: Config) -> int:
    return config.num_envs


def warmup_steps(config: Config) -> int:
    return config.warmup_steps


def _networks(env: Env, config: Config):
    return (SquashedGaussianActor(config.hidden_sizes, env.action_size, config.activation),
            QNetwork(config.hidden_sizes, config.activation))


def _buffer(config: Config):
    return make_buffer(buffer_capacity(config), config.batch_size)


def _optimizers(config: Config):
    return optax.adam(config.actor_lr), optax.adam(config.critic_lr), optax.adam(config.alpha_lr)


def _normalizer(state: State):
    return state.obs_stats.normalize if state.normalize_observations else (lambda x: x)


def init(key: jax.Array, env: Env, config: Config) -> State:
    actor, critic = _networks(env, config)
    k_actor, k_critic, k_env, k_warm, key = jax.random.split(key, 5)
    obs, action = jnp.zeros((1, env.obs_size)), jnp.zeros((1, env.action_size))
    actor_params = actor.init(k_actor, obs)
    critic_params = init_ensemble(critic, k_critic, 2, obs, action)
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = _optimizers(config)
    buffer = _buffer(config)
    buffer_state = buffer.init(transition_item(env.obs_size, env.action_size))
    env_state = batch_reset(env, k_env, config.num_envs)
    obs_stats = RunningStats.create((env.obs_size,))
    if config.warmup_steps:
        env_state, traj = rollout(env, env_state, uniform_policy(env.action_size), k_warm,
                                  config.warmup_steps // config.num_envs)
        buffer_state = buffer.add(buffer_state, as_items(traj))
        obs_stats = obs_stats.update(traj.obs)
    return State(actor_params, critic_params, critic_params, log_alpha, actor_opt.init(actor_params),
                 critic_opt.init(critic_params), alpha_opt.init(log_alpha), buffer_state, obs_stats,
                 env_state, key, actor, config.normalize_observations)


def act(state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    mean, log_std = state.actor.apply(state.actor_params, _normalizer(state)(obs))
    return jnp.tanh(mean) if deterministic else tanh_gaussian_sample(key, mean, log_std)[0]


def critic_target(actor, critic, actor_params, target_params, alpha, batch, key, config: Config):
    """y = r + γ(1 - terminated)(min_j Q̄_j(s', a') - α log π(a'|s')), a' ~ π(·|s').

    `next_obs` is the pre-reset observation, so a truncated transition bootstraps from the state the
    episode really reached; a terminated one does not bootstrap at all.
    """
    mean, log_std = actor.apply(actor_params, batch["next_obs"])
    next_action, next_log_prob = tanh_gaussian_sample(key, mean, log_std)
    next_q = apply_ensemble(critic, target_params, batch["next_obs"], next_action).min(0)
    soft_value = next_q - alpha * next_log_prob
    return config.reward_scale * batch["reward"] + config.gamma * (1.0 - batch["terminated"]) * soft_value


def critic_loss(critic_params, critic, batch, target):
    q = apply_ensemble(critic, critic_params, batch["obs"], batch["action"])
    return 0.5 * ((q - target) ** 2).mean(1).sum(), q.mean()


def actor_loss(actor_params, actor, critic, critic_params, alpha, obs, key):
    mean, log_std = actor.apply(actor_params, obs)
    action, log_prob = tanh_gaussian_sample(key, mean, log_std)
    q = apply_ensemble(critic, critic_params, obs, action).min(0)
    return (alpha * log_prob - q).mean(), log_prob


def temperature_loss(log_alpha, log_prob, target_entropy):
    return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


def gradient_step(state: State, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[State, dict]:
    actor, critic = _networks(env, config)
    actor_opt, critic_opt, alpha_opt = _optimizers(config)
    target_key, actor_key = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha)

    target = critic_target(actor, critic, state.actor_params, state.target_params, alpha, batch, target_key, config)
    (q_loss, q_mean), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic_params, critic, batch, jax.lax.stop_gradient(target))
    updates, critic_opt_state = critic_opt.update(q_grads, state.critic_opt)
    critic_params = optax.apply_updates(state.critic_params, updates)

    (pi_loss, log_prob), pi_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor_params, actor, critic, critic_params, alpha, batch["obs"], actor_key)
    updates, actor_opt_state = actor_opt.update(pi_grads, state.actor_opt)
    actor_params = optax.apply_updates(state.actor_params, updates)

    target_entropy = -config.target_entropy_scale * env.action_size
    a_loss, a_grad = jax.value_and_grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
    updates, alpha_opt_state = alpha_opt.update(a_grad, state.alpha_opt)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    new_state = state.replace(
        actor_params=actor_params, critic_params=critic_params, log_alpha=log_alpha,
        target_params=polyak(state.target_params, critic_params, config.tau),
        actor_opt=actor_opt_state, critic_opt=critic_opt_state, alpha_opt=alpha_opt_state)
    return new_state, {"critic_loss": q_loss, "actor_loss": pi_loss, "alpha": alpha, "q_mean": q_mean,
                       "entropy": -log_prob.mean()}


def iteration(state: State, env: Env, config: Config) -> tuple[State, dict]:
    normalize = _normalizer(state)
    key, act_key, update_key = jax.random.split(state.key, 3)

    def policy(obs, k):
        mean, log_std = state.actor.apply(state.actor_params, normalize(obs))
        return tanh_gaussian_sample(k, mean, log_std)[0], ()

    env_state, transition = env_step(env, state.env_state, policy, act_key)
    buffer = _buffer(config)
    buffer_state = buffer.add(state.buffer, as_items(transition))
    obs_stats = state.obs_stats.update(transition.obs) if config.normalize_observations else state.obs_stats
    state = state.replace(buffer=buffer_state, obs_stats=obs_stats, env_state=env_state, key=key)

    def update(s, k):
        sample_key, step_key = jax.random.split(k)
        batch = buffer.sample(s.buffer, sample_key).experience
        batch = {**batch, "obs": normalize(batch["obs"]), "next_obs": normalize(batch["next_obs"])}
        return gradient_step(s, batch, step_key, env, config)

    state, metrics = jax.lax.scan(update, state, jax.random.split(update_key, config.gradient_steps))
    return state, jax.tree.map(jnp.mean, metrics)
