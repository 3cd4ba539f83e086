"""PG-Rainbow (Jeon, Lee, Lee 2024, arXiv 2407.13146): PPO whose value is distilled from an implicit quantile
network. The paper's agent is discrete-action (Atari) and has no official code: this is our continuous-control
adaptation, not a reproduction.

 * An action-value IQN Z_φ(s, a; τ) (`pgjax.networks.ImplicitQuantileNetwork`) learns every iteration from a
   FIFO replay of PPO's last M rollouts: quantile Huber loss, expected-SARSA targets with a' ~ π_θ(·|s'), a
   Polyak target, its own Adam.
 * Quantile features q_φ(s): Z_φ at midpoint τs for K actions (the policy mean, then K − 1 samples), sorted.
 * V_ψ(s) = f_ψ(h(s) ⊙ q_φ(s)) learns beside PPO's own V_θ; GAE uses V_θ until the switch iteration, V_ψ
   after. value_source = "iqn_mean" is the naive substitution (the features' mean as the value).

With the switch past the end of the run this is exactly PPO. The losses and the design reasons:
docs/agents.md, section pg_rainbow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import gaussian_policy, onpolicy
from pgjax.agents import ppo
from pgjax.config import check_choice, check_positive, hyper, require, static
from pgjax.distributions import gaussian_sample
from pgjax.envs import Env
from pgjax.networks import MLP, GaussianActor, ImplicitQuantileNetwork, optimizer_step, polyak
from pgjax.replay import make_buffer, transition_item
from pgjax.sorting import sort_last_axis

VALUE_SOURCES = ("distilled", "iqn_mean")
# PPO splits its keys k into split(k, n)[i], which under JAX's partitionable threefry is fold_in(k, i):
# the IQN's keys are folded out with a tag no split count reaches, so they never coincide with PPO's
# (folding in 1 would hand the IQN the value network's init key and the second epoch's shuffle keys)
OWN_STREAM = 0x49514E  # "IQN"


@struct.dataclass
class Config(ppo.ActorCriticConfig):
    replay_rollouts: int = static(8, "M: the FIFO holds the last M rollouts")
    num_quantiles: int = static(32, "N = N': τ samples per transition in the IQN loss")
    feature_quantiles: int = static(32, "N_q: midpoints per action in q_φ(s)")
    feature_actions: int = static(4, "K: the policy mean and K - 1 samples")
    num_cosines: int = static(64, "cosines embedding each quantile level tau")
    iqn_hidden_sizes: tuple[int, ...] = static((64, 64), "hidden layer widths of the implicit quantile network")
    distill_hidden_sizes: tuple[int, ...] = static((64,), "hidden layer widths of the distillation head f_psi")
    iqn_updates: int = static(16, "IQN gradient steps per iteration")
    iqn_batch_size: int = static(256, "replay samples per IQN step")
    value_source: str = static(
        "distilled", "what replaces V_theta after the switch: distilled (V_psi) or iqn_mean (the naive ablation)"
    )
    switch_fraction: float = hyper(0.1, "the share of iterations that use V_θ before V_ψ takes over")
    iqn_lr: float = hyper(3e-4, "Adam learning rate of the implicit quantile network")
    iqn_target_tau: float = hyper(0.005, "Polyak coefficient per IQN step")
    kappa: float = hyper(1.0, "Huber threshold of the quantile loss")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(
            out,
            self,
            "replay_rollouts",
            "num_quantiles",
            "feature_quantiles",
            "feature_actions",
            "num_cosines",
            "iqn_updates",
            "iqn_batch_size",
            "iqn_lr",
            "kappa",
        )
        require(
            out,
            all(h > 0 for h in self.iqn_hidden_sizes + self.distill_hidden_sizes),
            "iqn_hidden_sizes and distill_hidden_sizes must be positive",
        )
        require(
            out,
            0.0 <= self.switch_fraction <= 1.0,
            f"switch_fraction = {self.switch_fraction} must lie in [0, 1] (the share of the run's "
            "iterations before V_ψ is used; 1 never switches, which is PPO)",
        )
        require(out, 0.0 < self.iqn_target_tau <= 1.0, f"iqn_target_tau = {self.iqn_target_tau} must lie in (0, 1]")
        check_choice(out, self, "value_source", VALUE_SOURCES)
        return out


@struct.dataclass
class Learner:
    actor_params: dict  # PPO's θ: actor and value network V_θ under one Adam (pgjax.agents.ppo)
    value_params: dict
    opt_state: optax.OptState
    updates: jax.Array  # iterations done
    distill_params: tuple  # (h, f_ψ)
    distill_opt_state: optax.OptState
    iqn_params: dict
    iqn_target_params: dict
    iqn_opt_state: optax.OptState
    replay: object  # flashbax state: the last M rollouts' transitions
    feature_noise: jax.Array  # [K - 1, action_size]: this iteration's ε_k
    actor: GaussianActor = static(None)
    value_net: MLP = static(None)
    feature_head: MLP = static(None)  # h
    distiller: MLP = static(None)  # f_ψ
    iqn: ImplicitQuantileNetwork = static(None)


act = gaussian_policy.act


# ---- the IQN and its loss -------------------------------------------------------------------------


def quantile_huber_loss(quantiles: jax.Array, taus: jax.Array, target: jax.Array, kappa) -> jax.Array:
    """Per sample: (1/N') Σ_i Σ_j |τ_i - 1{δ_ij < 0}| Huber_κ(δ_ij)/κ with δ_ij = target_j - Z(τ_i).
    quantiles, taus: [..., N]; target: [..., N'] (held fixed)."""
    delta = target[..., None, :] - quantiles[..., :, None]
    abs_delta = jnp.abs(delta)
    huber = jnp.where(abs_delta <= kappa, 0.5 * delta**2, kappa * (abs_delta - 0.5 * kappa))
    weight = jnp.abs(taus[..., :, None] - (delta < 0).astype(delta.dtype))
    return (weight * huber / kappa).sum(-2).mean(-1)


def sarsa_target(learner: Learner, actor_params, batch: dict, taus_next: jax.Array, key: jax.Array, gamma) -> jax.Array:
    """r + γ(1 - terminated) Z_φ̄(s', a'; τ'_j), a' ~ π_θ(·|s'): the next state's return distribution
    under the current policy. `next_obs` is pre-reset, so truncations bootstrap and terminations do not."""
    mean, log_std = learner.actor.apply(actor_params, batch["next_obs"])
    next_action = jnp.clip(gaussian_sample(key, mean, log_std), -1.0, 1.0)  # what the env would execute
    next_z = learner.iqn.apply(learner.iqn_target_params, batch["next_obs"], next_action, taus_next)
    return batch["reward"][..., None] + gamma * (1.0 - batch["terminated"][..., None]) * next_z


def iqn_loss(iqn_params, iqn: ImplicitQuantileNetwork, batch: dict, taus: jax.Array, target: jax.Array, kappa):
    quantiles = iqn.apply(iqn_params, batch["obs"], jnp.clip(batch["action"], -1.0, 1.0), taus)
    return quantile_huber_loss(quantiles, taus, jax.lax.stop_gradient(target), kappa).mean()


def iqn_optimizer(config: Config):
    return optax.adam(config.iqn_lr)


def iqn_step(learner: Learner, actor_params, batch: dict, key: jax.Array, config: Config) -> tuple[Learner, jax.Array]:
    """One Adam step of Z_φ on a replay batch, then the Polyak step of its target; returns the loss.
    The N τ's (and N' τ''s) are drawn fresh for every batch and shared by its samples: the loss stays
    an unbiased estimate, and the cosine embedding runs for N τ's instead of batch·N, which would
    make the IQN's steps cost twice PPO's whole update."""
    k_tau, k_tau_next, k_action = jax.random.split(key, 3)
    taus = jax.random.uniform(k_tau, (config.num_quantiles,))
    taus_next = jax.random.uniform(k_tau_next, (config.num_quantiles,))
    target = sarsa_target(learner, actor_params, batch, taus_next, k_action, config.gamma)
    loss, grads = jax.value_and_grad(iqn_loss)(learner.iqn_params, learner.iqn, batch, taus, target, config.kappa)
    params, opt_state = optimizer_step(iqn_optimizer(config), grads, learner.iqn_params, learner.iqn_opt_state)
    return learner.replace(
        iqn_params=params,
        iqn_target_params=polyak(learner.iqn_target_params, params, config.iqn_target_tau),
        iqn_opt_state=opt_state,
    ), loss


def replay_buffer(config: Config):
    """FIFO of exactly the last M rollouts: capacity M rollouts, one whole rollout added per iteration."""
    return make_buffer(config.replay_rollouts * onpolicy.steps_per_iteration(config), config.iqn_batch_size)


def train_iqn(learner: Learner, actor_params, key: jax.Array, config: Config) -> tuple[Learner, jax.Array]:
    """`iqn_updates` steps on uniform samples of the replay; returns the mean loss."""
    buffer = replay_buffer(config)

    def step(learner, k):
        k_sample, k_step = jax.random.split(k)
        return iqn_step(learner, actor_params, buffer.sample(learner.replay, k_sample).experience, k_step, config)

    learner, losses = jax.lax.scan(step, learner, jax.random.split(key, config.iqn_updates))
    return learner, losses.mean()


# ---- quantile features and the distilled value ----------------------------------------------------


def feature_actions(learner: Learner, obs: jax.Array) -> jax.Array:
    """[..., K, A]: the policy mean, then μ(s) + σ ε_k for this iteration's ε_1..ε_{K-1}."""
    mean, log_std = learner.actor.apply(learner.actor_params, obs)
    samples = mean[..., None, :] + jnp.exp(log_std)[..., None, :] * learner.feature_noise
    return jnp.concatenate([mean[..., None, :], samples], -2)


def midpoints(n: int) -> jax.Array:
    return (jnp.arange(n) + 0.5) / n


def quantile_features(learner: Learner, obs: jax.Array, config: Config) -> jax.Array:
    """q_φ(s): [..., K·N_q], Z_φ(s, a_k; τ_i) sorted over i within each action, mean action first."""
    actions = jnp.clip(feature_actions(learner, obs), -1.0, 1.0)
    obs = jnp.broadcast_to(obs[..., None, :], actions.shape[:-1] + obs.shape[-1:])
    z = learner.iqn.apply(learner.iqn_params, obs, actions, midpoints(config.feature_quantiles))
    return jax.lax.stop_gradient(sort_last_axis(z).reshape(z.shape[:-2] + (-1,)))


def distilled_value(distill_params, learner: Learner, obs: jax.Array, features: jax.Array) -> jax.Array:
    """V_ψ(s) = f_ψ(h(s) ⊙ q_φ(s))."""
    head_params, distiller_params = distill_params
    return learner.distiller.apply(distiller_params, learner.feature_head.apply(head_params, obs) * features)[..., 0]


def switched(learner: Learner, config: Config) -> jax.Array:
    return learner.updates >= switch_iteration(config)


def value(learner: Learner, obs: jax.Array, config: Config) -> dict:
    """The value GAE uses, V_θ before the switch iteration and the substitute from it on, with what
    the update needs for the same states: V_θ itself (PPO's clip anchor), q_φ(s) and V_ψ (the
    distillation's clip anchor), so that the features are computed once per state."""
    features = quantile_features(learner, obs, config)
    ppo_value = gaussian_policy.value(learner, obs, config)
    distilled = distilled_value(learner.distill_params, learner, obs, features)
    # the naive ablation substitutes the IQN mean E_a E_τ Z, averaged over all K·N_q features (the
    # mean action's quantiles among them, as in q_φ(s) itself)
    substitute = features.mean(-1) if config.value_source == "iqn_mean" else distilled
    return {
        "value": jnp.where(switched(learner, config), substitute, ppo_value),
        "ppo_value": ppo_value,
        "features": features,
        "distilled_value": distilled,
    }


# ---- init and update ------------------------------------------------------------------------------


def distill_networks(env: Env, config: Config) -> tuple[MLP, MLP]:
    width = config.feature_actions * config.feature_quantiles
    return (
        MLP(config.hidden_sizes, width, config.activation, out_scale=1.0),
        MLP(config.distill_hidden_sizes, 1, "relu", out_scale=1.0),
    )


def switch_iteration(config: Config) -> jax.Array:
    return jnp.floor(config.switch_fraction * onpolicy.num_iterations(config)).astype(jnp.int32)


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    """PPO's learner from the same key (so that PPO is the exact ablation), then the IQN, the
    distillation networks and an empty replay from keys folded out of it."""
    base = ppo.actor_critic_learner(key, env, config, squashed=False)  # its quantile features act unsquashed
    k_head, k_distiller, k_iqn, k_noise = jax.random.split(jax.random.fold_in(key, OWN_STREAM), 4)
    feature_head, distiller = distill_networks(env, config)
    iqn = ImplicitQuantileNetwork(config.iqn_hidden_sizes, config.num_cosines)
    obs, action = jnp.zeros((1, env.obs_size)), jnp.zeros((1, env.action_size))
    distill_params = (
        feature_head.init(k_head, obs),
        distiller.init(k_distiller, jnp.zeros((1, feature_head.out_size))),
    )
    iqn_params = iqn.init(k_iqn, obs, action, jnp.zeros((1, config.num_quantiles)))
    replay = replay_buffer(config).init(transition_item(env.obs_size, env.action_size))
    return Learner(
        actor_params=base.actor_params,
        value_params=base.value_params,
        opt_state=base.opt_state,
        updates=base.updates,
        distill_params=distill_params,
        distill_opt_state=ppo.optimizer(config).init(distill_params),
        iqn_params=iqn_params,
        iqn_target_params=iqn_params,
        iqn_opt_state=iqn_optimizer(config).init(iqn_params),
        replay=replay,
        feature_noise=draw_feature_noise(k_noise, env.action_size, config),
        actor=base.actor,
        value_net=base.value_net,
        feature_head=feature_head,
        distiller=distiller,
        iqn=iqn,
    )


def draw_feature_noise(key: jax.Array, action_size: int, config: Config) -> jax.Array:
    return jax.random.normal(key, (config.feature_actions - 1, action_size))


def distillation_loss(distill_params, learner: Learner, batch: dict, config: Config):
    """PPO's (clipped) value loss for V_ψ, clipped around V_ψ as it was when the batch was collected."""
    v = distilled_value(distill_params, learner, batch["obs"], batch["features"])
    loss = ppo.value_loss(v, {"value": batch["distilled_value"], "target": batch["target"]}, config)
    return loss, {"distill_value_loss": loss}


def update(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """PPO's epochs (bit for bit, with PPO's key) with a distillation step beside each PPO step, then
    the IQN on the replay that now holds this rollout, then fresh ε for the next iteration."""
    replay = replay_buffer(config).add(learner.replay, {k: batch[k] for k in transition_item(1, 1)})
    batch = {**batch, "value": batch["ppo_value"]}  # PPO clips V_θ around its own old prediction
    ppo_step = onpolicy.descent_step(
        lambda p, mb: ppo.ppo_loss(p, learner.actor, learner.value_net, mb, config), ppo.optimizer(config)
    )
    distill_step = onpolicy.descent_step(lambda p, mb: distillation_loss(p, learner, mb, config), ppo.optimizer(config))

    def step(carry, mb):
        ppo_carry, distill_carry = carry
        ppo_carry, info = ppo_step(ppo_carry, mb)
        distill_carry, distill_info = distill_step(distill_carry, mb)
        return (ppo_carry, distill_carry), {**info, **distill_info}

    carry = (
        ((learner.actor_params, learner.value_params), learner.opt_state),
        (learner.distill_params, learner.distill_opt_state),
    )
    (((actor_params, value_params), opt_state), (distill_params, distill_opt_state)), info = onpolicy.minibatch_epochs(
        step, carry, batch, key, config.num_epochs, config.num_minibatches
    )

    k_iqn, k_noise = jax.random.split(jax.random.fold_in(key, OWN_STREAM))
    learner, iqn_loss_mean = train_iqn(learner.replace(replay=replay), actor_params, k_iqn, config)
    metrics = {
        **jax.tree.map(jnp.mean, info),
        "iqn_loss": iqn_loss_mean,
        "switched": switched(learner, config).astype(jnp.float32),
        "value_gap": jnp.abs(batch["distilled_value"] - batch["value"]).mean(),
    }
    return learner.replace(
        actor_params=actor_params,
        value_params=value_params,
        opt_state=opt_state,
        distill_params=distill_params,
        distill_opt_state=distill_opt_state,
        feature_noise=draw_feature_noise(k_noise, env.action_size, config),
        updates=learner.updates + 1,
    ), metrics


agent = onpolicy.agent(
    Config=Config, init_learner=init_learner, sample=gaussian_policy.sample, value=value, update=update, act=act
)
