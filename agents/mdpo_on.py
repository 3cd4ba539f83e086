"""On-policy MDPO: Mirror Descent Policy Optimization (Tomar, Shani, Efroni, Ghavamzadeh, ICLR 2022,
arXiv 2005.09814), read next to its Algorithm 2 (summarised in docs/agents.md).

Each iteration k of the shared on-policy loop (`pgjax.onpolicy`) collects a batch with π_θk and its
GAE advantages, standardised over the whole batch. The policy then takes m (`sgd_steps`) Adam steps on
the *full* batch, each on the mirror-descent objective with π_θk frozen,

    L(θ) = mean[ρ_θ Â] − (1/t_k) · mean[KL(π_θ(·|s) ‖ π_θk(·|s))],   ρ_θ = π_θ(a|s) / π_θk(a|s),

the KL analytic for the diagonal Gaussian and in the new‖old direction, and the Bregman step size
t_k = 1 − k/K annealed linearly over the run's own K iterations (so the KL weight 1/t_k grows from 1).
The value network is trained apart, by its own minibatch epochs on the clipped value loss.
Networks: separate 64-64 tanh policy and value, state-independent log-std; entropy bonus 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import gaussian_policy, onpolicy
from pgjax.config import check_network, check_positive, hyper, static
from pgjax.distributions import gaussian_kl, gaussian_log_prob
from pgjax.envs import Env
from pgjax.networks import MLP, GaussianActor


@struct.dataclass
class Config(onpolicy.Config):
    # 64 envs x 32 steps = 2048 samples per iteration, the reference's batch; 5 value epochs in
    # minibatches of 128 at this layout (num_minibatches counts minibatches, as PPO's field, so at
    # 64 x 64 they hold 256). The reference's learning rates are constant (no annealing).
    rollout_length: int = static(32)
    num_epochs: int = static(5, "of the value network")
    num_minibatches: int = static(16)
    hidden_sizes: tuple[int, ...] = static((64, 64), "hidden layer widths of the networks")
    activation: str = static("tanh", "hidden-layer activation (tanh, relu, gelu, ...)")
    sgd_steps: int = static(10, "m: full-batch policy steps per iteration, π_θk frozen")
    lr: float = hyper(3e-4, "Adam learning rate")
    value_lr: float = hyper(3e-4, "Adam learning rate of the value network")
    value_clip: float = hyper(0.2, "clip range of the value loss around the old predictions")
    max_grad_norm: float = hyper(0.5, "of the policy's gradient")
    init_log_std: float = hyper(0.0, "initial log standard deviation of the Gaussian policy")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "sgd_steps", "lr", "value_lr", "value_clip", "max_grad_norm")
        check_network(out, self)
        return out


@struct.dataclass
class Learner:
    actor_params: dict
    value_params: dict
    policy_opt: optax.OptState
    value_opt: optax.OptState
    updates: jax.Array  # iterations done: the index k of the current mirror-descent step
    actor: GaussianActor = static(None)
    value_net: MLP = static(None)


act = gaussian_policy.act


def _optimizers(config: Config):
    policy = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))
    return policy, optax.adam(config.value_lr)


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    actor, value_net = gaussian_policy.networks(env, config.hidden_sizes, config.activation)
    actor_params, value_params = gaussian_policy.init_params(key, env, actor, value_net, config.init_log_std)
    policy_opt, value_opt = _optimizers(config)
    return Learner(
        actor_params=actor_params,
        value_params=value_params,
        policy_opt=policy_opt.init(actor_params),
        value_opt=value_opt.init(value_params),
        updates=jnp.zeros((), jnp.int32),
        actor=actor,
        value_net=value_net,
    )


def bregman_step_size(k: jax.Array, config: Config) -> jax.Array:
    """t_k = 1 − k/K over the K iterations the budget holds: 1 at k = 0, 1/K at the last one, the
    paper's schedule. (The reference computes 1 − (k−1)/K with k from 0: its t_k is ours at k − 1, a slightly
    weaker KL weight one iteration behind.)"""
    return 1.0 - k / onpolicy.num_iterations(config)


def policy_loss(actor_params, actor: GaussianActor, batch: dict, old_mean, old_log_std, kl_weight):
    """−(mean[ρ Â] − (1/t_k) mean[KL(π_θ ‖ π_θk)]); batch["advantage"] is already standardised."""
    mean, log_std = actor.apply(actor_params, batch["obs"])
    ratio = jnp.exp(gaussian_log_prob(batch["action"], mean, log_std) - batch["log_prob"])
    surrogate = (ratio * batch["advantage"]).mean()
    kl = gaussian_kl(mean, log_std, old_mean, old_log_std).mean()
    return -(surrogate - kl_weight * kl), {"surrogate": surrogate, "kl": kl}


def policy_update(learner: Learner, batch: dict, config: Config):
    """m Adam steps on the full batch with π_θk (the parameters the batch was collected with) frozen;
    the infos are per step, evaluated before it (so the first KL is 0), plus the KL after the last."""
    old_mean, old_log_std = jax.lax.stop_gradient(learner.actor.apply(learner.actor_params, batch["obs"]))
    kl_weight = 1.0 / bregman_step_size(learner.updates, config)
    step = onpolicy.descent_step(
        lambda params, full: policy_loss(params, learner.actor, full, old_mean, old_log_std, kl_weight),
        _optimizers(config)[0],
    )
    (actor_params, policy_opt), info = jax.lax.scan(
        lambda carry, _: step(carry, batch), (learner.actor_params, learner.policy_opt), None, length=config.sgd_steps
    )
    final_kl = gaussian_kl(*learner.actor.apply(actor_params, batch["obs"]), old_mean, old_log_std).mean()
    return actor_params, policy_opt, {**info, "final_kl": final_kl}


def value_loss(value_params, value_net: MLP, batch: dict, clip) -> tuple[jax.Array, dict]:
    value = value_net.apply(value_params, batch["obs"])[..., 0]
    loss = onpolicy.clipped_value_error(value, batch["value"], batch["target"], clip)
    return loss, {"value_loss": loss}


def update(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    batch = {**batch, "advantage": onpolicy.normalize_advantages(batch["advantage"])}  # over the whole batch
    actor_params, policy_opt, policy_info = policy_update(learner, batch, config)
    step = onpolicy.descent_step(
        lambda params, mb: value_loss(params, learner.value_net, mb, config.value_clip), _optimizers(config)[1]
    )
    (value_params, value_opt), value_info = onpolicy.minibatch_epochs(
        step, (learner.value_params, learner.value_opt), batch, key, config.num_epochs, config.num_minibatches
    )
    metrics = {
        "surrogate": policy_info["surrogate"].mean(),
        "kl": policy_info["final_kl"],
        "value_loss": value_info["value_loss"].mean(),
        "t_k": bregman_step_size(learner.updates, config),
    }
    return learner.replace(
        actor_params=actor_params,
        value_params=value_params,
        policy_opt=policy_opt,
        value_opt=value_opt,
        updates=learner.updates + 1,
    ), metrics


agent = onpolicy.agent(
    Config=Config,
    init_learner=init_learner,
    sample=gaussian_policy.sample,
    value=gaussian_policy.value,
    update=update,
    act=act,
)
