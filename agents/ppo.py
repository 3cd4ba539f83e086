"""PPO: Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347), continuous actions.

Read next to the paper's Algorithm 1 and the "37 implementation details" (Huang et al. 2022). The
shared on-policy loop (`pgjax.onpolicy`) runs the current policy for `rollout_length` steps in
`num_envs` environments and computes GAE advantages; PPO's update then takes `num_epochs` passes of
`num_minibatches` Adam steps on the clipped surrogate + clipped value loss - entropy bonus, with a
global gradient-norm clip and the learning rate annealed linearly to 0 over the run.
Policy: diagonal Gaussian, state-independent log-std; separate 64-64 tanh actor and value network.
PMOE-PPO and PG-Rainbow import this file's objective, optimiser and learner (and extend `ObjectiveConfig`
and `ActorCriticConfig`, the parts of PPO's config they honour).
Fields that reproduce Brax's `ppo.train` instead (`--preset brax`): `policy = "tanh_gaussian"`,
`value_hidden_sizes`, `kernel_init = "lecun_uniform"`, `clip_gradients = false`, `adam_eps = 1e-8`,
`clip_value_loss = false` and, in the loop, `reward_scale`, `mask_truncated`, `gae_segment` and
`advantage = "lambda_target"`.
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
class ObjectiveConfig(onpolicy.Config):
    """The clipped objective's fields and its optimiser's: what PMOE-PPO keeps of PPO."""

    hidden_sizes: tuple[int, ...] = static((64, 64), "hidden layer widths of the networks")
    activation: str = static("tanh", "hidden-layer activation (tanh, relu, gelu, ...)")
    anneal_lr: bool = static(True, "anneal the learning rate linearly to 0 over the run")
    clip_value_loss: bool = static(True, "clip the value loss around the old predictions (PPO's value clipping)")
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
        require(out, self.vf_coef >= 0 and self.ent_coef >= 0, "vf_coef and ent_coef must be >= 0")
        return out


@struct.dataclass
class ActorCriticConfig(ObjectiveConfig):
    """PPO's separate actor and value network, as Brax may build them: what PG-Rainbow keeps of PPO."""

    value_hidden_sizes: tuple[int, ...] = static((), "the value network's widths; empty: hidden_sizes", added=True)
    kernel_init: str = static("orthogonal", "orthogonal, or lecun_uniform (Brax's) for every layer", added=True)

    def problems(self) -> list[str]:
        out = super().problems()
        check_choice(out, self, "kernel_init", KERNEL_INITS)
        require(out, all(h > 0 for h in self.value_hidden_sizes), "value_hidden_sizes must be positive")
        return out


@struct.dataclass
class Config(ActorCriticConfig):
    """PPO's config: its Gaussian policy may be Brax's squashed one."""

    policy: str = static(
        "gaussian", "gaussian: state-independent std, env clips; tanh_gaussian: Brax's squashed one", added=True
    )

    def problems(self) -> list[str]:
        out = super().problems()
        check_choice(out, self, "policy", gaussian_policy.POLICIES)
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


def actor_critic_learner(key: jax.Array, env: Env, config: ActorCriticConfig, squashed: bool) -> Learner:
    """The policy (Brax's tanh-squashed one where `squashed`) and the value network, under one Adam."""
    actor, value_net = gaussian_policy.networks(
        env,
        config.hidden_sizes,
        config.activation,
        value_hidden_sizes=config.value_hidden_sizes,
        kernel_init=config.kernel_init,
        squashed=squashed,
    )
    actor_params, value_params = gaussian_policy.init_params(key, env, actor, value_net, config.init_log_std)
    return Learner(
        actor_params=actor_params,
        value_params=value_params,
        opt_state=optimizer(config).init((actor_params, value_params)),
        updates=jnp.zeros((), jnp.int32),
        actor=actor,
        value_net=value_net,
    )


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    return actor_critic_learner(key, env, config, squashed=config.policy == "tanh_gaussian")


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


act = gaussian_policy.act


def update(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """num_epochs x num_minibatches Adam steps on the joint loss of the policy and the value network."""
    step = onpolicy.descent_step(
        lambda params, mb: ppo_loss(params, learner.actor, learner.value_net, mb, config), optimizer(config)
    )
    carry = ((learner.actor_params, learner.value_params), learner.opt_state)
    ((actor_params, value_params), opt_state), info = onpolicy.minibatch_epochs(
        step, carry, batch, key, config.num_epochs, config.num_minibatches
    )
    return (
        learner.replace(
            actor_params=actor_params, value_params=value_params, opt_state=opt_state, updates=learner.updates + 1
        ),
        jax.tree.map(jnp.mean, info),
    )


agent = onpolicy.agent(
    Config=Config,
    init_learner=init_learner,
    sample=gaussian_policy.sample,
    value=gaussian_policy.value,
    update=update,
    act=act,
)
