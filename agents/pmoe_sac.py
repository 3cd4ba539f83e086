"""PMOE-SAC: SAC with a probabilistic mixture-of-experts policy (Ren, Li, Ding, Pan, Dong, "Probabilistic
Mixture-of-Experts for Efficient Deep Reinforcement Learning", arXiv 2104.09122), read next to its §4
(docs/agents.md, section pmoe_sac).

The policy π(a|s) = Σ_k w_k(s) π_k(a|s) is a linear softmax gate and K tanh-Gaussian experts on one trunk
(`pgjax.networks.MixtureActor`); it acts by drawing k ~ Cat(w(s)), then a ~ π_k. On SAC's updates
(`pgjax.agents.sac`) two equations change:
 * target: each expert draws a'_k at s'; the expert k' ~ Cat(w(s')) (or, as an option, the one with the largest
   min_j Q̄_j) supplies a' and ℓ' to y = r + γ(1-d)(min_j Q̄_j(s', a') − α ℓ');
 * actor, "back-propagation of the optimal expert": k* = argmax_k min_j Q_j(s, ã_k), and
   L = mean(α log π_k*(ã_k*|s) − Q_k*) + the gate's frequency loss mean_k (w_k(s) − 1[k = k*])².
α is tuned from log π_k*(ã_k*|s) (the mixture density has no closed form). K = 1 is SAC exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from pgjax import mixture, offpolicy
from pgjax.agents import sac
from pgjax.config import check_choice, check_positive, static
from pgjax.distributions import tanh_gaussian_sample
from pgjax.envs import Env
from pgjax.networks import MixtureActor, QNetwork, apply_ensemble

TARGET_EXPERTS = ("sample", "argmax_q")


@struct.dataclass
class Config(sac.SoftActorCriticConfig):
    # SAC's networks, batch and τ, so that the comparison with SAC changes the policy only (the reference
    # uses a 4x512 policy trunk, 3x512 critics, batch 300, τ 0.01, and ±3e-3 uniform output layers)
    num_experts: int = static(4, "K, Gaussian experts in the mixture policy")
    target_expert: str = static("sample", "k' ~ w(s'), or \"argmax_q\"")
    eval_expert: str = static("best_q", "deterministic evaluation, see pgjax.mixture.EXPERT_CHOICES")
    # the reference's quirk, off by default: rewards standardised per sampled batch (then times reward_scale;
    # the reference uses 10)
    standardize_batch_rewards: bool = static(False, "standardise each sampled batch's rewards")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "num_experts")
        check_choice(out, self, "target_expert", TARGET_EXPERTS)
        check_choice(out, self, "eval_expert", mixture.EXPERT_CHOICES)
        return out


@struct.dataclass
class Learner(sac.Learner):
    last_usage: jax.Array = None  # [K] each expert's share of k* at the last gradient step


def networks(env: Env, config: Config):
    """(mixture actor, Q network)."""
    return (
        MixtureActor(config.hidden_sizes, env.action_size, config.num_experts, config.activation),
        QNetwork(config.hidden_sizes, config.activation, layer_norm=config.critic_layer_norm),
    )


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    return sac.soft_actor_critic_learner(
        key,
        networks(env, config),
        env,
        config,
        Learner,
        last_usage=jnp.full((config.num_experts,), 1.0 / config.num_experts),
    )


def explore(learner: Learner, obs: jax.Array, key: jax.Array, config: Config) -> jax.Array:
    """k ~ Cat(w(s)), then a = tanh(u), u ~ N(μ_k(s), σ_k(s)²)."""
    k_expert, k_action = jax.random.split(key)
    logits, mean, log_std = learner.actor.apply(learner.actor_params, obs)
    actions, _ = tanh_gaussian_sample(k_action, mean, log_std)
    return mixture.select_expert(actions, mixture.sample_expert(k_expert, logits))


def act(
    state: offpolicy.State, obs: jax.Array, key: jax.Array, config: Config, *, deterministic: bool = False
) -> jax.Array:
    """Deterministic: tanh of one expert's mean, the expert chosen by `eval_expert`."""
    learner, obs = state.learner, offpolicy.normalizer(state)(obs)
    if not deterministic:
        return explore(learner, obs, key, config)
    logits, mean, _ = learner.actor.apply(learner.actor_params, obs)
    q_of_means = lambda: expert_q_values(learner.q_net, learner.critic_params, obs, jnp.tanh(mean))
    return jnp.tanh(mixture.select_expert(mean, mixture.evaluation_expert(key, logits, config.eval_expert, q_of_means)))


def expert_q_values(q_net, critic_params, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """min_j Q_j(s, a_k) for every expert's action a_k [B, K, |A|]: one call of the twin ensemble. -> [B, K]"""
    obs = jnp.broadcast_to(obs[..., None, :], actions.shape[:-1] + obs.shape[-1:])
    return apply_ensemble(q_net, critic_params, obs, actions).min(0)


def critic_target(actor, q_net, actor_params, target_params, alpha, batch, key, config: Config):
    """SAC's soft target with a' and ℓ' from the expert k' ~ w(s') (or argmax_k min_j Q̄_j(s', a'_k))."""
    logits, mean, log_std = actor.apply(actor_params, batch["next_obs"])
    actions, log_probs = tanh_gaussian_sample(key, mean, log_std)
    if config.target_expert == "sample":
        k = mixture.sample_expert(jax.random.fold_in(key, 1), logits)
    else:
        k = jnp.argmax(expert_q_values(q_net, target_params, batch["next_obs"], actions), axis=-1)
    return sac.soft_target(
        q_net,
        target_params,
        mixture.select_expert(actions, k),
        mixture.select_expert(log_probs, k),
        alpha,
        batch,
        config,
    )


def actor_loss(actor_params, actor, q_net, critic_params, alpha, obs, key, last_usage):
    """mean(α log π_k*(ã_k*|s) − Q_k*) + frequency loss; aux: (log π_k*, expert diagnostics)."""
    logits, mean, log_std = actor.apply(actor_params, obs)
    actions, log_probs = tanh_gaussian_sample(key, mean, log_std)
    q = expert_q_values(q_net, critic_params, obs, actions)
    best = jnp.argmax(q, axis=-1)
    log_prob = mixture.select_expert(log_probs, best)
    expert_loss = (alpha * log_prob - mixture.select_expert(q, best)).mean()
    return expert_loss + mixture.frequency_loss(logits, best), (log_prob, mixture.diagnostics(logits, best, last_usage))


def standardize_rewards(rewards: jax.Array) -> jax.Array:
    """(r − mean) / (std + 1e-6) over the sampled batch, with torch's unbiased std as the reference."""
    return (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)


def gradient_step(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """SAC's gradient step (its three updates and Polyak targets) with this file's target and actor loss."""
    actor, q_net = learner.actor, learner.q_net
    if config.standardize_batch_rewards:
        batch = {**batch, "reward": standardize_rewards(batch["reward"])}
    target_key, actor_key = jax.random.split(key)
    alpha = jnp.exp(learner.log_alpha)

    target = critic_target(actor, q_net, learner.actor_params, learner.target_params, alpha, batch, target_key, config)
    critic_params, critic_opt, critic_metrics = sac.critic_update(learner, batch, target, config)
    actor_critics = sac.critics_for_the_actor(learner, critic_params, config)
    actor_params, actor_opt, log_prob, pi_loss, extra = sac.actor_update(
        learner,
        lambda p: actor_loss(p, actor, q_net, actor_critics, alpha, batch["obs"], actor_key, learner.last_usage),
        config,
    )
    log_alpha, alpha_opt = sac.temperature_update(learner, log_prob, env, config)

    new = sac.stepped_learner(
        learner, (critic_params, critic_opt), (actor_params, actor_opt), (log_alpha, alpha_opt), config
    )
    metrics = sac.step_metrics(critic_metrics, pi_loss, alpha, log_prob, extra)
    return new.replace(last_usage=metrics["expert_usage"]), metrics


agent = offpolicy.agent(Config=Config, init_learner=init_learner, explore=explore, gradient_step=gradient_step, act=act)
