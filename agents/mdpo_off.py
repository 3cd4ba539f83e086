"""Off-policy MDPO: Mirror Descent Policy Optimization (Tomar, Shani, Efroni, Ghavamzadeh, ICLR 2022,
arXiv 2005.09814), read next to its Algorithm 3 (summarised in docs/agents.md).

On the shared off-policy loop (`pgjax.offpolicy`), with a tanh-Gaussian actor, twin Q-functions, a
state value V and its Polyak target V̄, one gradient step on a replay batch:
 * Q_j(s, a) → r + γ(1-d) V̄(s');   V(s) → min_j Q_j(s, ã) − λ log π_θ(ã|s), ã ~ π_θ;
 * the actor takes one step of mirror descent on the soft objective, with the entropy linearised at
   the old policy π_θk (the reparameterised ã = tanh(μ_θ + σ_θ ε) also moves log π_θk's argument):
       L(θ) = mean[ c log π_θ(ã|s) + q′(λ − c) log π_θk(ã|s) − Q_1(s, ã) ]
              + 1e-3 (mean μ² + mean (log σ)²),
   c = 1/t_k the Bregman coefficient (constant), λ the fixed entropy weight (no automatic temperature);
 * π_θk ← π_θ after every m = `sgd_steps` gradient steps.
Tsallis variant: every log above is log_q with q = 2 − q′, q′ = `tsallis_q` ∈ [1, 2] (q′ = 1: KL), applied
to each action dimension's density and summed. Since 1/t_k = λ cancels the π_θk term, SAC-v1's actor
loss with α = λ is the special case (tests/test_mdpo.py checks it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import maxent, offpolicy
from pgjax.config import check_network, check_positive, hyper, require, static
from pgjax.distributions import gaussian_log_density, gaussian_sample
from pgjax.envs import Env
from pgjax.networks import MLP, QNetwork, SquashedGaussianActor, apply_ensemble, optimizer_step, polyak

DENSITY_FLOOR = 1e-6  # each dimension's density, as the reference's log_q (per-dimension log-prob >= -13.8)


@struct.dataclass
class Config(offpolicy.Config):
    total_steps: int = static(1_000_000)
    warmup_steps: int = static(10_000)
    hidden_sizes: tuple[int, ...] = static((256, 256), "hidden layer widths of the networks")
    activation: str = static("relu", "hidden-layer activation (tanh, relu, gelu, ...)")
    sgd_steps: int = static(1000, "m: gradient steps between refreshes of the old policy π_θk")
    deterministic_explore: bool = static(False, "the reference acts with tanh(μ) after warm-up")
    actor_lr: float = hyper(3e-4, "Adam learning rate of the actor")
    critic_lr: float = hyper(3e-4, "of the twin Q and of V (one optimiser, as the reference)")
    entropy_coef: float = hyper(0.2, "λ, the entropy coefficient (fixed)")
    kl_coef: float = hyper(1.0, "1/t_k, the Bregman coefficient")
    tsallis_q: float = hyper(1.0, "q′ ∈ [1, 2]; the entropic index is 2 − q′")
    gaussian_reg: float = hyper(1e-3, "weight of mean μ² + mean (log σ)²")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "actor_lr", "critic_lr", "sgd_steps")
        check_network(out, self)
        for name in ("entropy_coef", "kl_coef", "gaussian_reg"):
            require(out, getattr(self, name) >= 0, f"{name} must be >= 0 (got {getattr(self, name)})")
        require(out, 1.0 <= self.tsallis_q <= 2.0, f"tsallis_q must be in [1, 2] (got {self.tsallis_q})")
        return out


@struct.dataclass
class Learner:
    actor_params: dict
    old_actor_params: dict  # π_θk
    critic_params: dict  # twin Q stacked on a leading axis of 2
    value_params: dict
    target_value_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    updates: jax.Array  # gradient steps taken
    actor: SquashedGaussianActor = static(None)
    q_net: QNetwork = static(None)  # one critic; its params: critic_params, two stacked
    value_net: MLP = static(None)  # V; its params: value_params


act = maxent.act


def networks(env: Env, config: Config):
    """(actor, Q network, value network)."""
    return (
        SquashedGaussianActor(config.hidden_sizes, env.action_size, config.activation),
        QNetwork(config.hidden_sizes, config.activation),
        MLP(config.hidden_sizes, 1, config.activation),
    )


def _optimizers(config: Config):
    return optax.adam(config.actor_lr), optax.adam(config.critic_lr)


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    actor, q_net, value_net = networks(env, config)
    k_ac, k_value = jax.random.split(key)
    actor_params, critic_params = maxent.init_actor_and_twin_critics(k_ac, actor, q_net, env.obs_size, env.action_size)
    value_params = value_net.init(k_value, jnp.zeros((1, env.obs_size)))
    actor_opt, critic_opt = _optimizers(config)
    return Learner(
        actor_params=actor_params,
        old_actor_params=actor_params,
        critic_params=critic_params,
        value_params=value_params,
        target_value_params=value_params,
        actor_opt=actor_opt.init(actor_params),
        critic_opt=critic_opt.init((critic_params, value_params)),
        updates=jnp.zeros((), jnp.int32),
        actor=actor,
        q_net=q_net,
        value_net=value_net,
    )


def explore(learner: Learner, obs: jax.Array, key: jax.Array, config: Config) -> jax.Array:
    if config.deterministic_explore:
        return jnp.tanh(learner.actor.apply(learner.actor_params, obs)[0])
    return maxent.explore(learner, obs, key, config)


def squashed_log_density(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Per action dimension, the log-density of tanh(u): log N(u; μ, σ) − log(1 − tanh²u + 1e-6). The
    reference's 1e-6 bounds the squash correction by 13.8, which keeps log_q's powers finite."""
    return gaussian_log_density(u, mean, log_std) - jnp.log(1.0 - jnp.tanh(u) ** 2 + 1e-6)


def tsallis_log(log_density: jax.Array, tsallis_q) -> jax.Array:
    """log_q(p) = (p^(1−q) − 1)/(1−q) with q = 2 − q′, of each density p = exp(log_density) floored at
    1e-6; written expm1((q′−1) log p)/(q′−1), exact as q′ → 1, where it is log p."""
    log_p = jnp.maximum(log_density, jnp.log(DENSITY_FLOOR))
    d = tsallis_q - 1.0
    return jnp.where(d == 0.0, log_p, jnp.expm1(d * log_p) / jnp.where(d == 0.0, 1.0, d))


def actor_loss(actor_params, actor, old_log_density, q1, obs, key, config: Config):
    """L(θ) of the module docstring. old_log_density(obs, u) gives π_θk's per-dimension log-density of
    tanh(u); q1(obs, action) the first critic. Also returns the sample ã and its log_q π_θ(ã|s)."""
    mean, log_std = actor.apply(actor_params, obs)
    u = gaussian_sample(key, mean, log_std)
    action = jnp.tanh(u)
    log_pi = tsallis_log(squashed_log_density(u, mean, log_std), config.tsallis_q).sum(-1)
    log_old = tsallis_log(old_log_density(obs, u), config.tsallis_q).sum(-1)
    c, lam = config.kl_coef, config.entropy_coef
    mirror = (c * log_pi + config.tsallis_q * (lam - c) * log_old - q1(obs, action)).mean()
    regulariser = config.gaussian_reg * ((mean**2).mean() + (log_std**2).mean())
    return mirror + regulariser, (action, log_pi)


def old_policy_log_density(actor, old_params):
    def log_density(obs, u):
        return squashed_log_density(u, *actor.apply(old_params, obs))

    return log_density


def critic_targets(learner: Learner, q_net, value_net, batch: dict, action, log_pi, config: Config):
    """y_Q = r + γ(1 − terminated) V̄(s') and y_V = min_j Q_j(s, ã) − λ log π_θ(ã|s), from the
    pre-update networks and the actor loss's own sample ã (log_q in the Tsallis variant, as the
    reference)."""
    next_v = value_net.apply(learner.target_value_params, batch["next_obs"])[..., 0]
    q_target = config.reward_scale * batch["reward"] + config.gamma * (1.0 - batch["terminated"]) * next_v
    min_q = apply_ensemble(q_net, learner.critic_params, batch["obs"], action).min(0)
    return jax.lax.stop_gradient(q_target), jax.lax.stop_gradient(min_q - config.entropy_coef * log_pi)


def critic_loss(params, q_net, value_net, batch, q_target, v_target):
    """0.5 mean (Q_j − y)² summed over j, plus 0.5 mean (V − y_V)²."""
    critic_params, value_params = params
    q = apply_ensemble(q_net, critic_params, batch["obs"], batch["action"])
    v = value_net.apply(value_params, batch["obs"])[..., 0]
    q_loss = 0.5 * ((q - q_target) ** 2).mean(1).sum()
    v_loss = 0.5 * ((v - v_target) ** 2).mean()
    return q_loss + v_loss, {"critic_loss": q_loss, "value_loss": v_loss, "q_mean": q.mean()}


def gradient_step(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    actor, q_net, value_net = learner.actor, learner.q_net, learner.value_net
    actor_opt, critic_opt = _optimizers(config)

    def q1(obs, action):
        return q_net.apply(jax.tree.map(lambda p: p[0], learner.critic_params), obs, action)

    (pi_loss, (action, log_pi)), pi_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        learner.actor_params,
        actor,
        old_policy_log_density(actor, learner.old_actor_params),
        q1,
        batch["obs"],
        key,
        config,
    )
    q_target, v_target = critic_targets(learner, q_net, value_net, batch, action, log_pi, config)
    c_grads, info = jax.grad(critic_loss, has_aux=True)(
        (learner.critic_params, learner.value_params), q_net, value_net, batch, q_target, v_target
    )

    actor_params, actor_opt_state = optimizer_step(actor_opt, pi_grads, learner.actor_params, learner.actor_opt)
    (critic_params, value_params), critic_opt_state = optimizer_step(
        critic_opt, c_grads, (learner.critic_params, learner.value_params), learner.critic_opt
    )

    # π_θk ← π_θ after gradient steps m, 2m, ... (the reference counts env steps from 0, warm-up included,
    # so its first refresh falls on the first gradient step; the old policy is the initial one until then)
    updates = learner.updates + 1
    refresh = updates % config.sgd_steps == 0
    old_actor_params = jax.tree.map(
        lambda new, old: jnp.where(refresh, new, old), actor_params, learner.old_actor_params
    )
    new = learner.replace(
        actor_params=actor_params,
        old_actor_params=old_actor_params,
        critic_params=critic_params,
        value_params=value_params,
        target_value_params=polyak(learner.target_value_params, value_params, config.tau),
        actor_opt=actor_opt_state,
        critic_opt=critic_opt_state,
        updates=updates,
    )
    return new, {**info, "actor_loss": pi_loss, "log_pi": log_pi.mean()}


agent = offpolicy.agent(Config=Config, init_learner=init_learner, explore=explore, gradient_step=gradient_step, act=act)
