"""PPO: Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347), continuous actions.

Read next to the paper's Algorithm 1 and the "37 implementation details" (Huang et al. 2022):
each iteration runs the current policy for `rollout_length` steps in `num_envs` environments,
computes GAE advantages (bootstrapping through truncations from the pre-reset observation, not
through terminations), then takes `num_epochs` passes of `num_minibatches` Adam steps on the
clipped surrogate + clipped value loss - entropy bonus, with a global gradient-norm clip.
Policy: diagonal Gaussian, state-independent log-std; separate 64-64 tanh actor and critic.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax.budget import iterations_in_budget
from pgjax.config import check_network, check_positive, check_unit_interval, hyper, require, static
from pgjax.distributions import gaussian_entropy, gaussian_log_prob, gaussian_sample
from pgjax.envs import Env, EnvState, batch_reset
from pgjax.minibatch import shuffled_minibatches
from pgjax.networks import MLP, GaussianActor
from pgjax.normalize import RewardScaler, RunningStats
from pgjax.returns import gae
from pgjax.rollout import rollout


@struct.dataclass
class Config:
    total_steps: int = static(1_000_000)
    num_envs: int = static(64)
    rollout_length: int = static(64)
    num_epochs: int = static(10)
    num_minibatches: int = static(8)
    hidden_sizes: tuple[int, ...] = static((64, 64))
    activation: str = static("tanh")
    normalize_observations: bool = static(True)
    scale_rewards: bool = static(True)
    anneal_lr: bool = static(True)
    clip_value_loss: bool = static(True)
    lr: float = hyper(3e-4)
    gamma: float = hyper(0.99)
    gae_lambda: float = hyper(0.95)
    clip_eps: float = hyper(0.2)
    vf_coef: float = hyper(0.5)
    ent_coef: float = hyper(0.0)
    max_grad_norm: float = hyper(0.5)
    init_log_std: float = hyper(0.0)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_positive(out, self, "total_steps", "num_envs", "rollout_length", "num_epochs",
                       "num_minibatches", "lr", "clip_eps", "max_grad_norm")
        check_unit_interval(out, self, "gamma", "gae_lambda")
        check_network(out, self)
        require(out, self.vf_coef >= 0 and self.ent_coef >= 0, "vf_coef and ent_coef must be >= 0")
        batch = self.num_envs * self.rollout_length
        require(out, self.num_minibatches <= 0 or batch % self.num_minibatches == 0,
                f"num_envs * rollout_length = {batch} must be divisible by num_minibatches = {self.num_minibatches}")
        return out


@struct.dataclass
class State:
    actor_params: dict
    critic_params: dict
    opt_state: optax.OptState
    obs_stats: RunningStats
    reward_scaler: RewardScaler
    env_state: EnvState
    key: jax.Array
    updates: jax.Array
    actor: GaussianActor = static(None)  # the policy network, kept for `act` and deployment
    normalize_observations: bool = static(True)


def steps_per_iteration(config: Config) -> int:
    return config.num_envs * config.rollout_length


def warmup_steps(config: Config) -> int:
    return 0


def _networks(env: Env, config: Config):
    actor = GaussianActor(config.hidden_sizes, env.action_size, config.activation)
    critic = MLP(config.hidden_sizes, 1, config.activation, out_scale=1.0)
    return actor, critic


def learning_rate(config: Config):
    """Constant, or annealed linearly from lr at the first Adam step to 0 at the last one the budget
    runs (the driver's schedule holds exactly these iterations)."""
    if not config.anneal_lr:
        return config.lr
    iterations = iterations_in_budget(config.total_steps, warmup_steps(config), steps_per_iteration(config))
    last_update = max(1, iterations * config.num_epochs * config.num_minibatches - 1)
    return lambda count: config.lr * jnp.maximum(1.0 - count / last_update, 0.0)


def _optimizer(config: Config):
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate(config), eps=1e-5))


def init(key: jax.Array, env: Env, config: Config) -> State:
    actor, critic = _networks(env, config)
    k_actor, k_critic, k_env, key = jax.random.split(key, 4)
    dummy = jnp.zeros((1, env.obs_size))
    actor_params = actor.init(k_actor, dummy)
    actor_params["params"]["log_std"] = jnp.full((env.action_size,), config.init_log_std)
    critic_params = critic.init(k_critic, dummy)
    opt_state = _optimizer(config).init((actor_params, critic_params))
    return State(actor_params, critic_params, opt_state, RunningStats.create((env.obs_size,)),
                 RewardScaler.create(config.num_envs), batch_reset(env, k_env, config.num_envs),
                 key, jnp.zeros((), jnp.int32), actor, config.normalize_observations)


def _normalizer(state: State):
    return state.obs_stats.normalize if state.normalize_observations else (lambda x: x)


def act(state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    """Actions in [-1, 1] space (the env clips the unbounded Gaussian sample)."""
    mean, log_std = state.actor.apply(state.actor_params, _normalizer(state)(obs))
    return mean if deterministic else gaussian_sample(key, mean, log_std)


def ppo_loss(params, actor, critic, batch, config: Config):
    """Clipped surrogate + c_v · clipped value loss − c_e · entropy, on one minibatch."""
    actor_params, critic_params = params
    mean, log_std = actor.apply(actor_params, batch["obs"])
    log_prob = gaussian_log_prob(batch["action"], mean, log_std)
    ratio = jnp.exp(log_prob - batch["log_prob"])
    adv = batch["advantage"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * adv)
    policy_loss = -surrogate.mean()

    value = critic.apply(critic_params, batch["obs"])[..., 0]
    value_err = (value - batch["target"]) ** 2
    if config.clip_value_loss:
        clipped = batch["value"] + jnp.clip(value - batch["value"], -config.clip_eps, config.clip_eps)
        value_err = jnp.maximum(value_err, (clipped - batch["target"]) ** 2)
    value_loss = 0.5 * value_err.mean()
    entropy = gaussian_entropy(log_std).mean()
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    approx_kl = ((ratio - 1.0) - jnp.log(ratio)).mean()
    return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "approx_kl": approx_kl}


def iteration(state: State, env: Env, config: Config) -> tuple[State, dict]:
    actor, critic = _networks(env, config)
    normalize = _normalizer(state)
    key, rollout_key, perm_key = jax.random.split(state.key, 3)

    def policy(obs, k):
        obs = normalize(obs)
        mean, log_std = actor.apply(state.actor_params, obs)
        action = gaussian_sample(k, mean, log_std)
        return action, {"log_prob": gaussian_log_prob(action, mean, log_std)}

    env_state, traj = rollout(env, state.env_state, policy, rollout_key, config.rollout_length)

    obs, next_obs = normalize(traj.obs), normalize(traj.next_obs)
    values = critic.apply(state.critic_params, obs)[..., 0]
    next_values = critic.apply(state.critic_params, next_obs)[..., 0]
    reward_scaler = state.reward_scaler
    rewards = traj.reward
    if config.scale_rewards:
        reward_scaler = reward_scaler.update(traj.reward, traj.done, config.gamma)
        rewards = reward_scaler.scale(traj.reward)
    advantages, targets = gae(rewards, values, next_values, traj.terminated, traj.done,
                              config.gamma, config.gae_lambda)

    batch = {"obs": obs, "action": traj.action, "log_prob": traj.extras["log_prob"],
             "value": values, "advantage": advantages, "target": targets}
    batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
    optimizer = _optimizer(config)
    grad_fn = jax.grad(ppo_loss, has_aux=True)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, info = grad_fn(params, actor, critic, minibatch, config)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), info

    def epoch(carry, k):
        return jax.lax.scan(minibatch_step, carry, shuffled_minibatches(k, batch, config.num_minibatches))

    carry = ((state.actor_params, state.critic_params), state.opt_state)
    ((actor_params, critic_params), opt_state), info = jax.lax.scan(
        epoch, carry, jax.random.split(perm_key, config.num_epochs))

    obs_stats = state.obs_stats.update(traj.obs) if config.normalize_observations else state.obs_stats
    new_state = state.replace(actor_params=actor_params, critic_params=critic_params, opt_state=opt_state,
                              obs_stats=obs_stats, reward_scaler=reward_scaler, env_state=env_state, key=key,
                              updates=state.updates + 1)
    return new_state, jax.tree.map(jnp.mean, info)
