"""PMOE-PPO: PPO with a probabilistic mixture-of-experts policy (Ren, Li, Ding, Pan, Dong, arXiv
2104.09122), read next to its §4 (summarised in docs/agents.md).

The policy is π(a|s) = Σ_k w_k(s) N(a; μ_k(s), σ_k²): a linear softmax gate w(s), K Gaussian experts
on one 64-64 tanh trunk, each expert with a state-independent log-std (`pgjax.networks.MixtureActor`).
On PPO's loop and clipped surrogate, the ratio uses the full mixture log-likelihood (log-sum-exp over
the experts), so the gate also learns from the surrogate. Two terms are added:
 * an extra critic Q_ψ(s, a) (3 hidden ReLU layers) regressed on the λ-return of the taken action;
 * the frequency loss mean_k (w_k(s) − 1[k = k*])², k* = argmax_k Q_ψ(s, a_k) for one action a_k drawn
   from each expert (no gradient through the draw).
L = L_freq + L_clip + c_v·L_V + L_Q, one Adam (eps 1e-5), global grad-norm clip; no entropy bonus (the
mixture's entropy has no closed form) and, as the reference, no learning-rate annealing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import gaussian_policy, mixture, onpolicy
from pgjax.agents import ppo
from pgjax.config import check_choice, check_positive, require, static
from pgjax.distributions import gaussian_sample
from pgjax.envs import Env
from pgjax.networks import MLP, MixtureActor, QNetwork


@struct.dataclass
class Config(ppo.ObjectiveConfig):
    # the reference's layout: 2048 samples per iteration (here 64 envs x 32), 10 epochs of 32
    # minibatches (of 64 at this layout), constant learning rate
    rollout_length: int = static(32)
    num_minibatches: int = static(32)
    anneal_lr: bool = static(False)
    num_experts: int = static(5, "K, Gaussian experts in the mixture policy")
    q_hidden_sizes: tuple[int, ...] = static((64, 64, 64), "hidden layer widths of the Q network")
    eval_expert: str = static("best_q", "deterministic evaluation, see pgjax.mixture.EXPERT_CHOICES")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "num_experts")
        require(out, all(h > 0 for h in self.q_hidden_sizes), "q_hidden_sizes must be positive")
        require(out, self.ent_coef == 0, "ent_coef must be 0: the mixture's entropy has no closed form")
        check_choice(out, self, "eval_expert", mixture.EXPERT_CHOICES)
        return out


@struct.dataclass
class Learner:
    actor_params: dict
    value_params: dict
    q_params: dict
    opt_state: optax.OptState
    last_usage: jax.Array  # [K] each expert's share of k* over the last iteration
    actor: MixtureActor = static(None)
    value_net: MLP = static(None)
    q_net: QNetwork = static(None)


value = gaussian_policy.value


def networks(env: Env, config: Config):
    return (
        MixtureActor(
            config.hidden_sizes, env.action_size, config.num_experts, config.activation, state_dependent_std=False
        ),
        MLP(config.hidden_sizes, 1, config.activation, out_scale=1.0),
        QNetwork(config.q_hidden_sizes, "relu"),
    )


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    actor, value_net, q_net = networks(env, config)
    k_actor, k_value, k_q = jax.random.split(key, 3)
    obs, action = jnp.zeros((1, env.obs_size)), jnp.zeros((1, env.action_size))
    actor_params = actor.init(k_actor, obs)
    actor_params["params"]["log_std"] = jnp.full((config.num_experts, env.action_size), config.init_log_std)
    value_params, q_params = value_net.init(k_value, obs), q_net.init(k_q, obs, action)
    return Learner(
        actor_params=actor_params,
        value_params=value_params,
        q_params=q_params,
        opt_state=ppo.optimizer(config).init((actor_params, value_params, q_params)),
        last_usage=jnp.full((config.num_experts,), 1.0 / config.num_experts),
        actor=actor,
        value_net=value_net,
        q_net=q_net,
    )


def sample(learner: Learner, obs: jax.Array, key: jax.Array, config: Config) -> tuple[jax.Array, dict]:
    """k ~ Cat(w(s)), a ~ N(μ_k, σ_k²) (unbounded; the env clips it), and the mixture's log-likelihood of a."""
    k_expert, k_action = jax.random.split(key)
    logits, mean, log_std = learner.actor.apply(learner.actor_params, obs)
    k = mixture.sample_expert(k_expert, logits)
    action = gaussian_sample(k_action, mixture.select_expert(mean, k), mixture.select_expert(log_std, k))
    return action, {"log_prob": mixture.mixture_log_prob(action, logits, mean, log_std)}


def act(
    state: onpolicy.State, obs: jax.Array, key: jax.Array, config: Config, *, deterministic: bool = False
) -> jax.Array:
    """Deterministic: one expert's mean, the expert chosen by `eval_expert` (best_q asks Q_ψ)."""
    learner, obs = state.learner, onpolicy.normalizer(state)(obs)
    if not deterministic:
        return sample(learner, obs, key, config)[0]
    logits, mean, _ = learner.actor.apply(learner.actor_params, obs)
    q_of_means = lambda: expert_q_values(learner, learner.q_params, obs, mean)
    return mixture.select_expert(mean, mixture.evaluation_expert(key, logits, config.eval_expert, q_of_means))


def expert_q_values(learner: Learner, q_params, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """Q_ψ(s, a_k) for every expert's action a_k [B, K, |A|], in one call. -> [B, K]"""
    obs = jnp.broadcast_to(obs[..., None, :], actions.shape[:-1] + obs.shape[-1:])
    return learner.q_net.apply(q_params, obs, actions)


def pmoe_ppo_loss(params, learner: Learner, batch: dict, config: Config, last_usage):
    """L_freq + L_clip (mixture likelihood) + c_v · L_V + L_Q on one minibatch (with its own key)."""
    actor_params, value_params, q_params = params
    logits, mean, log_std = learner.actor.apply(actor_params, batch["obs"])
    policy_loss, approx_kl = ppo.clipped_surrogate(
        mixture.mixture_log_prob(batch["action"], logits, mean, log_std), batch, config.clip_eps
    )
    v_loss = ppo.value_loss(learner.value_net.apply(value_params, batch["obs"])[..., 0], batch, config)

    expert_actions = jax.lax.stop_gradient(gaussian_sample(batch["key"], mean, log_std))  # [B, K, |A|]
    best = jnp.argmax(expert_q_values(learner, q_params, batch["obs"], expert_actions), axis=-1)
    freq_loss = mixture.frequency_loss(logits, best)
    q_loss = ((learner.q_net.apply(q_params, batch["obs"], batch["action"]) - batch["target"]) ** 2).mean()

    loss = freq_loss + policy_loss + config.vf_coef * v_loss + q_loss
    return loss, {
        "policy_loss": policy_loss,
        "value_loss": v_loss,
        "q_loss": q_loss,
        "frequency_loss": freq_loss,
        "approx_kl": approx_kl,
        **mixture.diagnostics(logits, best, last_usage),
    }


def update(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """num_epochs x num_minibatches Adam steps on the joint loss."""
    step = onpolicy.descent_step(
        lambda params, mb: pmoe_ppo_loss(params, learner, mb, config, learner.last_usage), ppo.optimizer(config)
    )
    carry = ((learner.actor_params, learner.value_params, learner.q_params), learner.opt_state)
    ((actor_params, value_params, q_params), opt_state), info = onpolicy.minibatch_epochs(
        step, carry, batch, key, config.num_epochs, config.num_minibatches
    )
    metrics = jax.tree.map(lambda m: m.mean((0, 1)), info)  # over epochs and minibatches
    return (
        learner.replace(
            actor_params=actor_params,
            value_params=value_params,
            q_params=q_params,
            opt_state=opt_state,
            last_usage=metrics["expert_usage"],
        ),
        metrics,
    )


agent = onpolicy.agent(Config=Config, init_learner=init_learner, sample=sample, value=value, update=update, act=act)
