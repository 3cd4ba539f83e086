"""DSAC-T: distributional soft actor-critic with three refinements (Duan et al., "Distributional Soft
Actor-Critic with Three Refinements", arXiv 2310.05858), read next to its Algorithm 1 (docs/agents.md, section
dsact, gives each step's exact form and the defaults). Each critic j = 1, 2 models the soft return as a
Gaussian Z_j(s, a) ~ N(Q_j, σ_j²). On the shared off-policy loop (`pgjax.offpolicy`), one gradient step:
 1. draws the next action from the *target* policy, a' ~ π_φ̄(·|s'), ℓ' = log π_φ̄(a'|s');
 2. samples each target critic's return z_j = Q̄_j + clip(ε_j, -3, 3) σ̄_j;
 3. twin value distribution learning: per sample, the critic with the smaller mean supplies Q' and z';
 4. expected-value substitution: y_q = r + γ(1-d)(Q' - αℓ') drives the mean, y_z (the same with z') only
    the variance;
 5. tracks b_j, the running mean of σ_j;
 6. clips the sample target to ŷ_j = Q_j + clip(y_z - Q_j, -3b_j, 3b_j);
 7. takes the variance-based adjusted critic gradient, the Gaussian NLL gradient rescaled by ω_j = b_j² + ε;
 8-10. every `delay_update` steps, from the first on, steps the actor and α and Polyak-averages all three targets.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import maxent, offpolicy
from pgjax.config import check_network, check_positive, check_unit_interval, hyper, static
from pgjax.distributions import tanh_gaussian_sample
from pgjax.envs import Env
from pgjax.networks import GaussianReturnCritic, SquashedGaussianActor, apply_ensemble, optimizer_step, polyak

SAMPLE_CLIP = 3.0  # the standard-normal draw of step 2 and the boundary 3·b_j of step 6
LOG_STD_MAX = 0.5


@struct.dataclass
class Config(offpolicy.Config):
    # the official MuJoCo script's defaults: 20 env steps per gradient step, 1e4 warm-up transitions
    num_envs: int = static(20)
    warmup_steps: int = static(10_000)
    random_warmup: bool = static(False, "the official trainer fills its warm-up with the initial policy")
    total_steps: int = static(1_000_000)
    hidden_sizes: tuple[int, ...] = static((256, 256, 256), "hidden layer widths of the networks")
    activation: str = static("gelu", "hidden-layer activation (tanh, relu, gelu, ...)")
    delay_update: int = static(2, "gradient steps between actor and target updates")
    actor_lr: float = hyper(1e-4, "Adam learning rate of the actor")
    critic_lr: float = hyper(1e-4, "Adam learning rate of the critics")
    alpha_lr: float = hyper(3e-4, "Adam learning rate of the temperature")
    tau_b: float = hyper(0.005, "averaging rate of the running critic std b")
    epsilon: float = hyper(0.1, "ε of the adjusted gradient's denominators and of ω = b² + ε")
    init_alpha: float = hyper(math.e, "α₀ = e: log α₀ = 1 (to a float32 ulp), as the official code")
    target_entropy_scale: float = hyper(1.0, "target entropy = -scale * |A|")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "actor_lr", "critic_lr", "alpha_lr", "init_alpha", "epsilon", "delay_update")
        check_unit_interval(out, self, "tau_b")
        check_network(out, self)
        return out


@struct.dataclass
class Learner:
    actor_params: dict
    target_actor_params: dict
    critic_params: dict  # twin critics stacked on a leading axis of 2
    target_critic_params: dict
    b: jax.Array  # [2] running mean of each critic's σ; negative until the first batch sets it
    log_alpha: jax.Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    updates: jax.Array  # gradient steps taken
    actor: SquashedGaussianActor = static(None)
    q_net: GaussianReturnCritic = static(None)  # one critic; its params: critic_params, two stacked


explore, act, temperature_loss = maxent.explore, maxent.act, maxent.temperature_loss


def networks(env: Env, config: Config):
    """(actor, critic): the clamped tanh-Gaussian policy and the Gaussian return critic."""
    return (
        SquashedGaussianActor(config.hidden_sizes, env.action_size, config.activation, log_std_max=LOG_STD_MAX),
        GaussianReturnCritic(config.hidden_sizes, config.activation),
    )


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    actor, q_net = networks(env, config)
    actor_params, critic_params = maxent.init_actor_and_twin_critics(key, actor, q_net, env.obs_size, env.action_size)
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    actor_opt, critic_opt, alpha_opt = maxent.optimizers(config)
    return Learner(
        actor_params=actor_params,
        target_actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        b=-jnp.ones(2),
        log_alpha=log_alpha,
        actor_opt=actor_opt.init(actor_params),
        critic_opt=critic_opt.init(critic_params),
        alpha_opt=alpha_opt.init(log_alpha),
        updates=jnp.zeros((), jnp.int32),
        actor=actor,
        q_net=q_net,
    )


def critic_targets(actor, q_net, learner: Learner, batch: dict, key: jax.Array, config: Config):
    """Steps 1-4: (y_q, y_z), each [B], shared by both critics."""
    next_key, noise_key = jax.random.split(key)
    mean, log_std = actor.apply(learner.target_actor_params, batch["next_obs"])
    next_action, next_log_prob = tanh_gaussian_sample(next_key, mean, log_std)
    q_bar, std_bar = apply_ensemble(q_net, learner.target_critic_params, batch["next_obs"], next_action)
    noise = jnp.clip(jax.random.normal(noise_key, q_bar.shape), -SAMPLE_CLIP, SAMPLE_CLIP)
    z = q_bar + noise * std_bar
    first_is_smaller = q_bar[0] < q_bar[1]
    q_next = jnp.where(first_is_smaller, q_bar[0], q_bar[1])
    z_next = jnp.where(first_is_smaller, z[0], z[1])
    alpha = jnp.exp(learner.log_alpha)
    reward = config.reward_scale * batch["reward"]
    not_terminal = config.gamma * (1.0 - batch["terminated"])
    return reward + not_terminal * (q_next - alpha * next_log_prob), reward + not_terminal * (
        z_next - alpha * next_log_prob
    )


def running_std(b: jax.Array, std: jax.Array, tau_b) -> jax.Array:
    """Step 5: b_j ← (1 - τ_b) b_j + τ_b mean_B σ_j, starting from the first batch's mean."""
    batch_mean = jax.lax.stop_gradient(std).mean(-1)
    return jnp.where(b < 0, batch_mean, (1.0 - tau_b) * b + tau_b * batch_mean)


def adjusted_critic_surrogate(q, std, y_q, y_z, b, epsilon):
    """Steps 6-7 for one critic: a surrogate whose gradient is the ω-rescaled Gaussian NLL gradient,
    with y_q in the mean term and the clipped sample ŷ in the variance term. q, std, y_q, y_z: [B]."""
    sg = jax.lax.stop_gradient
    q_hat, std_hat = sg(q), sg(jnp.maximum(std, 0.0))
    y_hat = q_hat + jnp.clip(y_z - q_hat, -SAMPLE_CLIP * b, SAMPLE_CLIP * b)
    mean_weight = sg((y_q - q) / (std_hat**2 + epsilon))
    std_weight = sg(((q_hat - y_hat) ** 2 - std_hat**2) / (std_hat**3 + epsilon))
    return -(b**2 + epsilon) * jnp.mean(mean_weight * q + std_weight * std)


def critic_loss(critic_params, q_net, batch, y_q, y_z, b, config: Config):
    q, std = apply_ensemble(q_net, critic_params, batch["obs"], batch["action"])
    b = running_std(b, std, config.tau_b)
    per_critic = jax.vmap(adjusted_critic_surrogate, in_axes=(0, 0, None, None, 0, None))(
        q, std, y_q, y_z, jax.lax.stop_gradient(b), config.epsilon
    )
    return per_critic.sum(), (b, q.mean(), std.mean())


def actor_loss(actor_params, actor, q_net, critic_params, alpha, obs, key):
    """Step 8: mean(α log π(ã|s) - min_j Q_j(s, ã)) with the pre-update critics' means."""
    mean, log_std = actor.apply(actor_params, obs)
    action, log_prob = tanh_gaussian_sample(key, mean, log_std)
    q, _ = apply_ensemble(q_net, critic_params, obs, action)
    return (alpha * log_prob - q.min(0)).mean(), log_prob


def gradient_step(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    actor, q_net = learner.actor, learner.q_net
    actor_opt, critic_opt, alpha_opt = maxent.optimizers(config)
    target_key, actor_key = jax.random.split(key)
    alpha = jnp.exp(learner.log_alpha)

    # every gradient is taken at the pre-update parameters, then all of them step (as the official code)
    y_q, y_z = critic_targets(actor, q_net, learner, batch, target_key, config)
    (q_loss, (b, q_mean, std_mean)), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        learner.critic_params, q_net, batch, y_q, y_z, learner.b, config
    )
    (pi_loss, log_prob), pi_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        learner.actor_params, actor, q_net, learner.critic_params, alpha, batch["obs"], actor_key
    )
    target_entropy = maxent.target_entropy(env.action_size, config)
    alpha_grad = jax.grad(temperature_loss)(learner.log_alpha, log_prob, target_entropy)

    # the official trainer tests `iteration % delay_update == 0` before counting the step, so the delayed
    # updates fall on gradient steps 1, 1 + delay, 1 + 2 delay, ...
    delayed_now = learner.updates % config.delay_update == 0
    critic_params, critic_opt_state = optimizer_step(critic_opt, q_grads, learner.critic_params, learner.critic_opt)
    learner = learner.replace(
        critic_params=critic_params,
        critic_opt=critic_opt_state,
        b=b,
        updates=learner.updates + 1,
    )

    def delayed_update(learner: Learner) -> Learner:
        """Step 10: actor, α and the three targets, only every `delay_update` steps (so their Adam
        states do not advance in between)."""
        actor_params, actor_opt_state = optimizer_step(actor_opt, pi_grads, learner.actor_params, learner.actor_opt)
        log_alpha, alpha_opt_state = optimizer_step(alpha_opt, alpha_grad, learner.log_alpha, learner.alpha_opt)
        return learner.replace(
            actor_params=actor_params,
            actor_opt=actor_opt_state,
            alpha_opt=alpha_opt_state,
            log_alpha=log_alpha,
            target_actor_params=polyak(learner.target_actor_params, actor_params, config.tau),
            target_critic_params=polyak(learner.target_critic_params, learner.critic_params, config.tau),
        )

    learner = jax.lax.cond(delayed_now, delayed_update, lambda l: l, learner)
    return learner, {
        "critic_loss": q_loss,
        "actor_loss": pi_loss,
        "alpha": alpha,
        "q_mean": q_mean,
        "std_mean": std_mean,
        "b_mean": b.mean(),
        "entropy": -log_prob.mean(),
    }


agent = offpolicy.agent(Config=Config, init_learner=init_learner, explore=explore, gradient_step=gradient_step, act=act)
