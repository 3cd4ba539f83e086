"""SAC with automatic temperature (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv 1812.05905), read next to its Algorithm 1.

On the shared off-policy loop (`pgjax.offpolicy`: act with a ~ π(·|s), store, sample, normalise),
each gradient step moves twin soft Q-functions toward r + γ(1-d)(min_j Q̄_j(s',a') - α log π(a'|s')),
the reparameterised actor toward min_j Q_j - α log π, the temperature toward the target entropy -|A|,
and Polyak-averages the target critics.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import maxent, offpolicy
from pgjax.config import check_choice, check_network, check_positive, hyper, static
from pgjax.distributions import tanh_gaussian_sample
from pgjax.envs import Env
from pgjax.networks import (
    KERNEL_INITS,
    QNetwork,
    SoftplusTanhGaussianActor,
    SquashedGaussianActor,
    apply_ensemble,
    polyak,
)

POLICY_STDS = ("clipped_log_std", "softplus")


@struct.dataclass
class Config(offpolicy.Config):
    hidden_sizes: tuple[int, ...] = static((256, 256))
    activation: str = static("relu")
    actor_lr: float = hyper(3e-4)
    critic_lr: float = hyper(3e-4)
    alpha_lr: float = hyper(3e-4)
    init_alpha: float = hyper(1.0)
    target_entropy_scale: float = hyper(1.0)  # target entropy = -scale * |A|
    # Brax sac.train's choices where ours differ (all off by default; `--preset brax` sets them):
    critic_layer_norm: bool = static(False)  # layer norm after each hidden activation of the critics
    policy_std: str = static("clipped_log_std")  # or "softplus": std = softplus(raw) + 0.001 (its head
    # starts at 0.01 of the orthogonal gain, as PPO's tanh-Gaussian; LeCun weights ignore that scale)
    kernel_init: str = static("orthogonal")  # or "lecun_uniform", every layer of actor and critics
    mask_truncated: bool = static(False)  # truncated transitions left out of the critic loss
    actor_on_updated_critics: bool = static(True)  # False: the actor steps on this step's pre-update critics
    temperature_loss: str = static("log_alpha")  # -log α·sg(log π + H̄), or "alpha": -α·sg(log π + H̄)
    ADDED_FIELDS = (
        "critic_layer_norm",
        "policy_std",
        "kernel_init",
        "mask_truncated",
        "actor_on_updated_critics",
        "temperature_loss",
    )

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "actor_lr", "critic_lr", "alpha_lr", "init_alpha")
        check_network(out, self)
        check_choice(out, self, "policy_std", POLICY_STDS)
        check_choice(out, self, "kernel_init", KERNEL_INITS)
        check_choice(out, self, "temperature_loss", maxent.TEMPERATURE_LOSSES)
        return out


@struct.dataclass
class Learner:
    actor_params: dict
    critic_params: dict  # twin critics stacked on a leading axis of 2
    target_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    actor: nn.Module = static(None)  # the policy network (clamped or softplus std), kept for `act` and deployment


explore, act, temperature_loss = maxent.explore, maxent.act, maxent.temperature_loss


def _networks(env: Env, config: Config):
    init = config.kernel_init
    if config.policy_std == "softplus":
        actor = SoftplusTanhGaussianActor(config.hidden_sizes, env.action_size, config.activation, weight_init=init)
    else:
        actor = SquashedGaussianActor(config.hidden_sizes, env.action_size, config.activation, weight_init=init)
    return actor, QNetwork(config.hidden_sizes, config.activation, config.critic_layer_norm, weight_init=init)


def soft_actor_critic_learner(key: jax.Array, networks, env: Env, config: Config, learner_cls=Learner, **extra):
    """A learner for the three updates of `gradient_step` from its (actor, critic) networks: twin critics (targets =
    critics), α₀, optimiser states; `learner_cls` and `extra` for agents that keep more (PMOE-SAC)."""
    actor, critic = networks
    actor_params, critic_params = maxent.init_actor_and_twin_critics(key, actor, critic, env.obs_size, env.action_size)
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = maxent.optimizers(config)
    return learner_cls(
        actor_params,
        critic_params,
        critic_params,
        log_alpha,
        actor_opt.init(actor_params),
        critic_opt.init(critic_params),
        alpha_opt.init(log_alpha),
        actor,
        **extra,
    )


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    return soft_actor_critic_learner(key, _networks(env, config), env, config)


def soft_target(critic, target_params, next_action, next_log_prob, alpha, batch, config: Config):
    """y = r + γ(1 - terminated)(min_j Q̄_j(s', a') - α log π(a'|s')) for a given next action a'.

    `next_obs` is the pre-reset observation, so a truncated transition bootstraps from the state the
    episode really reached; a terminated one does not bootstrap at all.
    """
    next_q = apply_ensemble(critic, target_params, batch["next_obs"], next_action).min(0)
    soft_value = next_q - alpha * next_log_prob
    return config.reward_scale * batch["reward"] + config.gamma * (1.0 - batch["terminated"]) * soft_value


def critic_target(actor, critic, actor_params, target_params, alpha, batch, key, config: Config):
    """The soft target with a' ~ π(·|s')."""
    mean, log_std = actor.apply(actor_params, batch["next_obs"])
    next_action, next_log_prob = tanh_gaussian_sample(key, mean, log_std)
    return soft_target(critic, target_params, next_action, next_log_prob, alpha, batch, config)


def critic_loss(critic_params, critic, batch, target, weight=1.0):
    """½ Σ_j mean_batch(weight·(Q_j - y)²); `weight` 0 leaves a transition out (still counted in the mean)."""
    q = apply_ensemble(critic, critic_params, batch["obs"], batch["action"])
    return 0.5 * (weight * (q - target) ** 2).mean(1).sum(), q.mean()


def critic_weight(batch: dict, config: Config):
    """Brax's "better bootstrapping for truncated episodes": its stored next observation after a truncation is
    the next episode's first, so it drops those transitions (ours holds the true one and can bootstrap)."""
    return 1.0 - batch["truncated"] if config.mask_truncated else 1.0


def actor_loss(actor_params, actor, critic, critic_params, alpha, obs, key):
    """mean(α log π(ã|s) - min_j Q_j(s, ã)), ã reparameterised; aux: (log π(ã|s), no extra metrics)."""
    mean, log_std = actor.apply(actor_params, obs)
    action, log_prob = tanh_gaussian_sample(key, mean, log_std)
    q = apply_ensemble(critic, critic_params, obs, action).min(0)
    return (alpha * log_prob - q).mean(), (log_prob, {})


def critic_update(learner, critic, batch: dict, target: jax.Array, config: Config):
    """Algorithm 1's critic update: one Adam step of the twin critics on `critic_loss` toward sg(y).
    -> (critic params, optimiser state, metrics)"""
    _, critic_opt, _ = maxent.optimizers(config)
    (q_loss, q_mean), grads = jax.value_and_grad(critic_loss, has_aux=True)(
        learner.critic_params, critic, batch, jax.lax.stop_gradient(target), critic_weight(batch, config)
    )
    updates, opt_state = critic_opt.update(grads, learner.critic_opt)
    return optax.apply_updates(learner.critic_params, updates), opt_state, {"critic_loss": q_loss, "q_mean": q_mean}


def actor_update(learner, loss_fn, config: Config):
    """Algorithm 1's policy update: one Adam step of the actor on loss_fn(actor params) -> (loss, (log π of
    its sample, extra metrics)). -> (actor params, optimiser state, log π, loss, extra metrics)"""
    actor_opt, _, _ = maxent.optimizers(config)
    (loss, (log_prob, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.actor_params)
    updates, opt_state = actor_opt.update(grads, learner.actor_opt)
    return optax.apply_updates(learner.actor_params, updates), opt_state, log_prob, loss, extra


def temperature_update(learner, log_prob: jax.Array, env: Env, config: Config):
    """Algorithm 1's temperature update: one Adam step of log α toward the target entropy, on the log π
    of the actor update's sample (drawn before the actor moved). -> (log α, optimiser state)"""
    _, _, alpha_opt = maxent.optimizers(config)
    loss_fn = maxent.temperature_loss_on_alpha if config.temperature_loss == "alpha" else temperature_loss
    grad = jax.grad(loss_fn)(learner.log_alpha, log_prob, maxent.target_entropy(env.action_size, config))
    updates, opt_state = alpha_opt.update(grad, learner.alpha_opt)
    return optax.apply_updates(learner.log_alpha, updates), opt_state


def critics_for_the_actor(learner, critic_params, config: Config):
    """The critics the actor steps on: this step's updated ones (the paper's order), or with
    `actor_on_updated_critics = false` the step's pre-update ones, as Brax does."""
    return critic_params if config.actor_on_updated_critics else learner.critic_params


def stepped_learner(learner, critic, actor, log_alpha, config: Config):
    """The learner after the three updates, `critic`, `actor` and `log_alpha` each (params, optimiser
    state), with the targets Polyak-averaged toward the new critics."""
    return learner.replace(
        actor_params=actor[0],
        critic_params=critic[0],
        log_alpha=log_alpha[0],
        target_params=polyak(learner.target_params, critic[0], config.tau),
        actor_opt=actor[1],
        critic_opt=critic[1],
        alpha_opt=log_alpha[1],
    )


def step_metrics(critic_metrics: dict, actor_loss_value, alpha, log_prob, extra: dict) -> dict:
    return {
        "critic_loss": critic_metrics["critic_loss"],
        "actor_loss": actor_loss_value,
        "alpha": alpha,
        "q_mean": critic_metrics["q_mean"],
        "entropy": -log_prob.mean(),
        **extra,
    }


def gradient_step(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """One gradient step of Algorithm 1, α held at its value at the step's start: the critics toward the
    soft target, the actor on the critics, the temperature, then the Polyak targets."""
    actor, critic = _networks(env, config)
    target_key, actor_key = jax.random.split(key)
    alpha = jnp.exp(learner.log_alpha)

    target = critic_target(actor, critic, learner.actor_params, learner.target_params, alpha, batch, target_key, config)
    critic_params, critic_opt, critic_metrics = critic_update(learner, critic, batch, target, config)
    actor_critics = critics_for_the_actor(learner, critic_params, config)
    actor_params, actor_opt, log_prob, pi_loss, extra = actor_update(
        learner, lambda p: actor_loss(p, actor, critic, actor_critics, alpha, batch["obs"], actor_key), config
    )
    log_alpha, alpha_opt = temperature_update(learner, log_prob, env, config)

    new = stepped_learner(
        learner, (critic_params, critic_opt), (actor_params, actor_opt), (log_alpha, alpha_opt), config
    )
    return new, step_metrics(critic_metrics, pi_loss, alpha, log_prob, extra)


init, iteration, steps_per_iteration, warmup_steps = offpolicy.agent(init_learner, explore, gradient_step)
