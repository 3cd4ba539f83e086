"""PPO's clipped objective and what goes with it (Schulman et al. 2017), shared by PPO, PMOE-PPO and
PG-Rainbow: the config, the learner (a Gaussian policy and a separate value network under one Adam),
the optimiser with its gradient clip and annealed learning rate, the clipped surrogate, the (clipped)
value loss and their sum with the entropy bonus. PPO's update is `pgjax.agents.ppo.update`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import gaussian_policy, onpolicy
from pgjax.config import check_choice, check_network, check_positive, hyper, require, static
from pgjax.envs import Env
from pgjax.networks import KERNEL_INITS, MLP, GaussianActor


@struct.dataclass
class Config(onpolicy.Config):
    hidden_sizes: tuple[int, ...] = static((64, 64), "hidden layer widths of the networks")
    activation: str = static("tanh", "hidden-layer activation (tanh, relu, gelu, ...)")
    anneal_lr: bool = static(True, "anneal the learning rate linearly to 0 over the run")
    clip_value_loss: bool = static(True, "clip the value loss around the old predictions (PPO's value clipping)")
    policy: str = static(
        "gaussian", "gaussian: state-independent std, env clips; tanh_gaussian: Brax's squashed one", added=True
    )
    value_hidden_sizes: tuple[int, ...] = static((), "the value network's widths; empty: hidden_sizes", added=True)
    kernel_init: str = static("orthogonal", "orthogonal, or lecun_uniform (Brax's) for every layer", added=True)
    clip_gradients: bool = static(True, "clip the global gradient norm at max_grad_norm", added=True)
    lr: float = hyper(3e-4, "Adam learning rate")
    clip_eps: float = hyper(0.2, "PPO's probability-ratio clip")
    vf_coef: float = hyper(0.5, "value loss coefficient")
    ent_coef: float = hyper(0.0, "entropy bonus coefficient")
    max_grad_norm: float = hyper(0.5, "global gradient-norm clip")
    init_log_std: float = hyper(0.0, "initial log-std of the Gaussian policy (policy = gaussian)")
    adam_eps: float = hyper(1e-5, "Adam's epsilon (optax's default, which Brax keeps, is 1e-8)", added=True)

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "lr", "clip_eps", "max_grad_norm", "adam_eps")
        check_network(out, self)
        check_choice(out, self, "policy", gaussian_policy.POLICIES)
        check_choice(out, self, "kernel_init", KERNEL_INITS)
        require(out, all(h > 0 for h in self.value_hidden_sizes), "value_hidden_sizes must be positive")
        require(out, self.vf_coef >= 0 and self.ent_coef >= 0, "vf_coef and ent_coef must be >= 0")
        return out


@struct.dataclass
class Learner:
    actor_params: dict
    value_params: dict
    opt_state: optax.OptState
    updates: jax.Array  # iterations done
    actor: GaussianActor = static(None)  # the policy (or Brax's squashed one); its params: actor_params
    value_net: MLP = static(None)  # V; its params: value_params


def learning_rate(config: Config):
    """Constant, or annealed linearly from lr at the first Adam step to 0 at the last one the run takes."""
    if not config.anneal_lr:
        return config.lr
    return onpolicy.annealed_lr(config.lr, config, config.num_epochs * config.num_minibatches)


def optimizer(config: Config):
    adam = optax.adam(learning_rate(config), eps=config.adam_eps)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam) if config.clip_gradients else adam


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    actor_params, value_params = gaussian_policy.init_params(key, env, config)
    opt_state = optimizer(config).init((actor_params, value_params))
    return Learner(
        actor_params, value_params, opt_state, jnp.zeros((), jnp.int32), *gaussian_policy.networks(env, config)
    )


def clipped_surrogate(log_prob, batch: dict, clip_eps) -> tuple[jax.Array, jax.Array]:
    """(−mean min(ρÂ, clip(ρ, 1−ε, 1+ε)Â) with advantages normalised within the minibatch, approx KL)."""
    ratio = jnp.exp(log_prob - batch["log_prob"])
    adv = onpolicy.normalize_advantages(batch["advantage"])
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    return -surrogate.mean(), ((ratio - 1.0) - jnp.log(ratio)).mean()


def value_loss(value, batch: dict, config: Config) -> jax.Array:
    """0.5 · the (clipped, by default) squared error to the λ-return."""
    if config.clip_value_loss:
        return 0.5 * onpolicy.clipped_value_error(value, batch["value"], batch["target"], config.clip_eps)
    return 0.5 * ((value - batch["target"]) ** 2).mean()


def ppo_loss(params, actor, value_net, batch, config: Config):
    """Clipped surrogate + c_v · clipped value loss − c_e · entropy, on one minibatch."""
    actor_params, value_params = params
    mean, log_std = actor.apply(actor_params, batch["obs"])
    policy_loss, approx_kl = clipped_surrogate(
        gaussian_policy.log_prob(actor, mean, log_std, batch), batch, config.clip_eps
    )
    v_loss = value_loss(value_net.apply(value_params, batch["obs"])[..., 0], batch, config)
    entropy = gaussian_policy.entropy(actor, mean, log_std, batch.get("key")).mean()
    loss = policy_loss + config.vf_coef * v_loss - config.ent_coef * entropy
    return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy, "approx_kl": approx_kl}
