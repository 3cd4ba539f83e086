"""SAC with automatic temperature (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv 1812.05905), read next to its Algorithm 1.

On the shared off-policy loop (`pgjax.offpolicy`: act with a ~ π(·|s), store, sample, normalise),
each gradient step (three updates, which PMOE-SAC imports from this file) moves twin soft
Q-functions toward r + γ(1-d)(min_j Q̄_j(s',a') - α log π(a'|s')),
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
    optimizer_step,
    polyak,
)

POLICY_STDS = ("clipped_log_std", "softplus")


@struct.dataclass
class SoftActorCriticConfig(offpolicy.Config):
    """The fields of the three updates and their networks' common choices: what PMOE-SAC keeps of SAC."""

    hidden_sizes: tuple[int, ...] = static((256, 256), "hidden layer widths of the networks")
    activation: str = static("relu", "hidden-layer activation (tanh, relu, gelu, ...)")
    actor_lr: float = hyper(3e-4, "Adam learning rate of the actor")
    critic_lr: float = hyper(3e-4, "Adam learning rate of the critics")
    alpha_lr: float = hyper(3e-4, "Adam learning rate of the temperature")
    init_alpha: float = hyper(1.0, "initial entropy temperature alpha")
    target_entropy_scale: float = hyper(1.0, "target entropy = -scale * |A|")
    # Brax sac.train's choices where ours differ (all off by default; `--preset brax` sets them):
    critic_layer_norm: bool = static(False, "layer norm after each hidden activation of the critics", added=True)
    mask_truncated: bool = static(False, "truncated transitions left out of the critic loss", added=True)
    actor_on_updated_critics: bool = static(
        True, "False: the actor steps on this step's pre-update critics", added=True
    )
    temperature_loss: str = static("log_alpha", '-log α·sg(log π + H̄), or "alpha": -α·sg(log π + H̄)', added=True)

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "actor_lr", "critic_lr", "alpha_lr", "init_alpha")
        check_network(out, self)
        check_choice(out, self, "temperature_loss", maxent.TEMPERATURE_LOSSES)
        return out

    def stores_truncation(self) -> bool:
        return self.mask_truncated


@struct.dataclass
class Config(SoftActorCriticConfig):
    """SAC's config: its actor and critics may be built as Brax builds them."""

    policy_std: str = static(
        "clipped_log_std",
        'or "softplus": std = softplus(raw) + 0.001 (its head starts at 0.01 of the orthogonal gain, as'
        " PPO's tanh-Gaussian; LeCun weights ignore that scale)",
        added=True,
    )
    kernel_init: str = static("orthogonal", 'or "lecun_uniform", every layer of actor and critics', added=True)

    def problems(self) -> list[str]:
        out = super().problems()
        check_choice(out, self, "policy_std", POLICY_STDS)
        check_choice(out, self, "kernel_init", KERNEL_INITS)
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
    actor: nn.Module = static(None)  # the policy network (its params: actor_params)
    q_net: nn.Module = static(None)  # one soft Q-function (its params: critic_params, two stacked)


def soft_actor_critic_learner(key: jax.Array, networks, env: Env, config: Config, learner_cls=Learner, **extra):
    """A learner for the three updates from its (actor, Q) networks: twin critics (targets = critics), α₀,
    optimiser states; `learner_cls` and `extra` for agents that keep more (PMOE-SAC)."""
    actor, q_net = networks
    actor_params, critic_params = maxent.init_actor_and_twin_critics(key, actor, q_net, env.obs_size, env.action_size)
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = maxent.optimizers(config)
    return learner_cls(
        actor_params=actor_params,
        critic_params=critic_params,
        target_params=critic_params,
        log_alpha=log_alpha,
        actor_opt=actor_opt.init(actor_params),
        critic_opt=critic_opt.init(critic_params),
        alpha_opt=alpha_opt.init(log_alpha),
        actor=actor,
        q_net=q_net,
        **extra,
    )


def soft_target(q_net, target_params, next_action, next_log_prob, alpha, batch, config: Config):
    """y = r + γ(1 - terminated)(min_j Q̄_j(s', a') - α log π(a'|s')) for a given next action a'.

    `next_obs` is the pre-reset observation, so a truncated transition bootstraps from the state the
    episode really reached; a terminated one does not bootstrap at all.
    """
    next_q = apply_ensemble(q_net, target_params, batch["next_obs"], next_action).min(0)
    soft_value = next_q - alpha * next_log_prob
    return config.reward_scale * batch["reward"] + config.gamma * (1.0 - batch["terminated"]) * soft_value


def critic_loss(critic_params, q_net, batch, target, weight=1.0):
    """½ Σ_j mean_batch(weight·(Q_j - y)²); `weight` 0 leaves a transition out (still counted in the mean)."""
    q = apply_ensemble(q_net, critic_params, batch["obs"], batch["action"])
    return 0.5 * (weight * (q - target) ** 2).mean(1).sum(), q.mean()


def critic_weight(batch: dict, config: Config):
    """Brax's "better bootstrapping for truncated episodes": its stored next observation after a truncation is
    the next episode's first, so it drops those transitions (ours holds the true one and can bootstrap)."""
    return 1.0 - batch["truncated"] if config.mask_truncated else 1.0


def critic_update(learner, batch: dict, target: jax.Array, config: Config):
    """Algorithm 1's critic update: one Adam step of the twin critics on `critic_loss` toward sg(y).
    -> (critic params, optimiser state, metrics)"""
    _, critic_opt, _ = maxent.optimizers(config)
    (q_loss, q_mean), grads = jax.value_and_grad(critic_loss, has_aux=True)(
        learner.critic_params, learner.q_net, batch, jax.lax.stop_gradient(target), critic_weight(batch, config)
    )
    critic_params, opt_state = optimizer_step(critic_opt, grads, learner.critic_params, learner.critic_opt)
    return critic_params, opt_state, {"critic_loss": q_loss, "q_mean": q_mean}


def actor_update(learner, loss_fn, config: Config):
    """Algorithm 1's policy update: one Adam step of the actor on loss_fn(actor params) -> (loss, (log π of
    its sample, extra metrics)). -> (actor params, optimiser state, log π, loss, extra metrics)"""
    actor_opt, _, _ = maxent.optimizers(config)
    (loss, (log_prob, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.actor_params)
    actor_params, opt_state = optimizer_step(actor_opt, grads, learner.actor_params, learner.actor_opt)
    return actor_params, opt_state, log_prob, loss, extra


def temperature_update(learner, log_prob: jax.Array, env: Env, config: Config):
    """Algorithm 1's temperature update: one Adam step of log α toward the target entropy, on the log π
    of the actor update's sample (drawn before the actor moved). -> (log α, optimiser state)"""
    _, _, alpha_opt = maxent.optimizers(config)
    loss_fn = maxent.temperature_loss_on_alpha if config.temperature_loss == "alpha" else maxent.temperature_loss
    grad = jax.grad(loss_fn)(learner.log_alpha, log_prob, maxent.target_entropy(env.action_size, config))
    return optimizer_step(alpha_opt, grad, learner.log_alpha, learner.alpha_opt)


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
