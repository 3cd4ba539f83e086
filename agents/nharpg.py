"""N-HARPG: normalized Hessian-aided recursive policy gradient (Fatkhullin, Barakat, Kireeva, He, ICML
2023, arXiv 2302.01734), read next to the paper's N-HARPG algorithm. No critic, no Adam, no importance
sampling. A trajectory τ_m is one env's `rollout_length` = T step segment. Each iteration t:

1. a batch at θ_t gives the GPOMDP gradient g_t = ∇Φ̄(θ_t),
   Φ̄(θ) = 1/(M·T) Σ_m Σ_h Ψ_{m,h} log π_θ(a_{m,h} | s_{m,h});
2. q_t ~ U(0, 1) and θ̂_t = q_t θ_t + (1 − q_t) θ_{t−1};
3. an independent batch at θ̂_t gives, along v = θ_t − θ_{t−1},
       u_t = 1/(M̂·T) Σ_m [ ∇²Φ_m(θ̂) v + ∇Φ_m(θ̂) · ⟨∇ log p(τ̂_m | θ̂), v⟩ ];
4. recursive momentum d_t = (1 − η_t)(d_{t−1} + u_t) + η_t g_t (d_0 = g_0);
5. normalised step θ_{t+1} = θ_t + γ_t d_t / ‖d_t‖ (global L2 norm over all policy parameters).

`variant` "npg" drops step 3, "harpg" the normalisation. Schedules, the baseline in Ψ, the frozen normalisers,
the segment form's biases and our defaults beside the paper's: docs/agents.md, section nharpg.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from pgjax import gaussian_policy, onpolicy
from pgjax.config import check_choice, check_network, check_positive, hyper, require, static
from pgjax.contract import Agent
from pgjax.distributions import gaussian_log_prob
from pgjax.envs import Env, EnvState
from pgjax.normalize import RewardScaler, normalizer
from pgjax.returns import gae
from pgjax.rollout import Transition, rollout

VARIANTS = ("nharpg", "npg", "harpg")
BASELINE_RIDGE = 1e-3  # on the second-moment matrix of the features (per sample)


@struct.dataclass
class Config(onpolicy.RolloutConfig):
    """The on-policy loop's rollout fields and N-HARPG's own. Defaults chosen for the tasks the tests and
    the sweep run (see docs/agents.md for how they depart from
    the reference launcher's: batch 1000, Hessian batch 32, γ_0 = 0.1 and η_0 = 1 with both decaying)."""

    total_steps: int = static(2_000_000)
    # 4 envs x 200 steps = 800 env steps at θ_t, 2 x 200 = 400 at θ̂_t. T = 200 is a whole gymnax Pendulum
    # episode (segments stay aligned with episodes there, so Ψ is not truncated and no segment starts
    # mid-episode); with γ = 0.99 longer segments add little to Ψ and much to the score's variance.
    num_envs: int = static(4)
    rollout_length: int = static(200, "T: the length of every trajectory (segment), both batches")
    hessian_num_envs: int = static(2, "envs of the second batch, at the interpolated parameters")
    variant: str = static("nharpg", '"nharpg" | "npg" (no Hessian term) | "harpg" (unnormalised)')
    # Constant γ and η: with the decaying schedules a few hundred iterations travel too little (Σγ_t grows
    # as 2γ_0 ln t) and d_t accumulates the u_t's noise as η_t → 0; see docs/agents.md.
    constant_step: bool = static(True, "γ_t = γ_0 instead of the decaying schedule")
    constant_momentum: bool = static(True, "η_t = η_0 (t ≥ 1) instead of η_0·2/(t+2)")
    hidden_sizes: tuple[int, ...] = static((64, 64), "hidden layer widths of the networks")
    activation: str = static("tanh", "hidden-layer activation (tanh, relu, gelu, ...)")
    gamma_0: float = hyper(0.0075, "γ_0: a step's length in parameter space (the first one's, decaying)")
    eta_0: float = hyper(0.5, "η_0 ∈ (0, 1]")
    init_log_std: float = hyper(0.0, "initial log standard deviation of the Gaussian policy")

    def problems(self) -> list[str]:
        out = super().problems()
        check_positive(out, self, "hessian_num_envs", "gamma_0")
        require(out, 0.0 < self.eta_0 <= 1.0, f"eta_0 must be in (0, 1] (got {self.eta_0})")
        check_choice(out, self, "variant", VARIANTS)
        check_network(out, self)
        return out


@struct.dataclass
class Learner:
    actor_params: dict  # θ_t
    prev_actor_params: dict  # θ_{t−1} (θ_0 at t = 0, so v = 0)
    momentum: dict  # d_{t−1}
    updates: jax.Array  # iterations done: the paper's t
    actor: object = static(None)


def uses_hessian(config: Config) -> bool:
    return config.variant != "npg"


def normalized(config: Config) -> bool:
    return config.variant != "harpg"


def steps_per_iteration(config: Config) -> int:
    """Both batches: the one at θ_t and, unless the variant has no Hessian term, the one at θ̂_t."""
    return total_envs(config) * config.rollout_length


def num_features(obs_size: int) -> int:
    return 2 * obs_size + 4


def init_learner(key: jax.Array, env: Env, config: Config) -> Learner:
    actor, value_net = gaussian_policy.networks(env, config.hidden_sizes, config.activation)
    actor_params = gaussian_policy.init_params(key, env, actor, value_net, config.init_log_std)[0]
    zeros = jax.tree.map(jnp.zeros_like, actor_params)
    return Learner(
        actor_params=actor_params,
        prev_actor_params=actor_params,
        momentum=zeros,
        updates=jnp.zeros((), jnp.int32),
        actor=actor,
    )


def init(key: jax.Array, env: Env, config: Config) -> onpolicy.State:
    """The on-policy loop's state; its envs are num_envs for the batch at θ_t, then hessian_num_envs for the
    one at θ̂_t."""
    return onpolicy.init(key, env, config, init_learner, total_envs(config))


# ---------------------------------------------------------------- schedules


def momentum_weight(t: jax.Array, config: Config) -> jax.Array:
    """η_t = η_0·2/(t+2) (or η_0), and 1 at t = 0: there is no d_{−1}, so d_0 = g_0."""
    eta = config.eta_0 if config.constant_momentum else config.eta_0 * 2.0 / (t + 2.0)
    return jnp.where(t == 0, 1.0, eta)


def step_size(t: jax.Array, config: Config) -> jax.Array:
    """γ_t = γ_0·2/(t+2) normalised, γ_0·(2/(t+2))^{1/2} unnormalised (HARPG), or γ_0 throughout."""
    if config.constant_step:
        return jnp.asarray(config.gamma_0, jnp.float32)
    decay = 2.0 / (t + 2.0)
    return config.gamma_0 * (decay if normalized(config) else jnp.sqrt(decay))


# ---------------------------------------------------------------- the surrogate and its derivatives
# A batch holds [T, M, ...] arrays: obs (normalised), action, psi (Ψ, fixed); axis 1 indexes trajectories.


def step_log_probs(params, apply, batch: dict) -> jax.Array:
    """log π_θ(a_h | s_h) of every step, [T, M]."""
    mean, log_std = apply(params, batch["obs"])
    return gaussian_log_prob(batch["action"], mean, log_std)


def trajectory_log_probs(params, apply, batch: dict) -> jax.Array:
    """log p(τ_m | θ) up to dynamics terms: the *sum* over each trajectory's steps, [M]."""
    return step_log_probs(params, apply, batch).sum(0)


def trajectory_surrogates(params, apply, batch: dict) -> jax.Array:
    """Φ_m(θ) / T = Σ_h Ψ_{m,h} log π_θ(a_{m,h} | s_{m,h}) / T, [M]."""
    return (jax.lax.stop_gradient(batch["psi"]) * step_log_probs(params, apply, batch)).mean(0)


def surrogate(params, apply, batch: dict) -> jax.Array:
    """Φ̄(θ) = mean_m Φ_m(θ) / T."""
    return trajectory_surrogates(params, apply, batch).mean()


def policy_gradient(params, apply, batch: dict):
    """g = ∇Φ̄(θ): GPOMDP with the baseline inside Ψ, per env step."""
    return jax.grad(surrogate)(params, apply, batch)


def hessian_vector_product(params, v, apply, batch: dict):
    """∇²Φ̄(θ) v, forward-over-reverse: the directional derivative of the gradient along v."""
    return jax.jvp(lambda p: policy_gradient(p, apply, batch), (params,), (v,))[1]


def hessian_correction(params, v, apply, batch: dict):
    """u = mean_m [∇²Φ_m v + ∇Φ_m ⟨∇log p(τ_m), v⟩] / T at θ = params (θ̂_t), on a batch sampled there.

    The second term is the derivative of the sampling distribution: d/dθ E_{τ~p_θ}[∇Φ] along v. Each
    trajectory's ∇Φ_m is weighted by its own score ⟨∇log p(τ_m), v⟩ (one jvp for all m), with the
    log-probabilities summed over the trajectory, not averaged over the batch."""
    _, scores = jax.jvp(lambda p: trajectory_log_probs(p, apply, batch), (params,), (v,))
    scores = jax.lax.stop_gradient(scores)
    score_term = jax.grad(lambda p: (scores * trajectory_surrogates(p, apply, batch)).mean())(params)
    return jax.tree.map(jnp.add, hessian_vector_product(params, v, apply, batch), score_term)


def interpolation_point(key: jax.Array, params, prev_params):
    """θ̂ = q θ_t + (1 − q) θ_{t−1} with q ~ U(0, 1): makes u unbiased for ∇J(θ_t) − ∇J(θ_{t−1})."""
    q = jax.random.uniform(key)
    return jax.tree.map(lambda a, b: q * a + (1.0 - q) * b, params, prev_params), q


def recursive_momentum(prev, correction, gradient, eta):
    """d_t = (1 − η)(d_{t−1} + u_t) + η g_t."""
    return jax.tree.map(lambda d, u, g: (1.0 - eta) * (d + u) + eta * g, prev, correction, gradient)


def ascent_step(params, direction, gamma, normalize: bool):
    """θ + γ d/‖d‖ (global L2 norm), or θ + γ d unnormalised."""
    scale = gamma / jnp.maximum(optax.global_norm(direction), 1e-12) if normalize else gamma
    return jax.tree.map(lambda p, d: p + scale * d, params, direction)


# ---------------------------------------------------------------- Ψ: reward-to-go minus the baseline


def segment_reward_to_go(rewards, terminated, done, gamma) -> jax.Array:
    """Σ_{k ≥ h} γ^{k−h} r_k inside the segment, stopping at episode ends, [T, M]: GAE with V ≡ 0 and
    λ = 1 (no bootstrap at the segment's end, nor at a truncation)."""
    zeros = jnp.zeros_like(rewards)
    return gae(rewards, zeros, zeros, terminated, done, gamma, 1.0)[0]


def baseline_features(obs: jax.Array) -> jax.Array:
    """[s, s², h/T, (h/T)², (h/T)³, 1] for every step of [T, M, obs] normalised observations."""
    T = obs.shape[0]
    pos = jnp.broadcast_to((jnp.arange(T, dtype=obs.dtype) / T)[:, None, None], obs.shape[:2] + (1,))
    return jnp.concatenate([obs, obs**2, pos, pos**2, pos**3, jnp.ones_like(pos)], -1)


@jax.custom_batching.sequential_vmap
def _solve(matrix: jax.Array, rhs: jax.Array) -> jax.Array:
    # never batched: vmapped over seeds, a batched LAPACK call can deadlock jaxlib 0.10's XLA:CPU
    return jnp.linalg.solve(matrix, rhs)


def fit_baseline(obs: jax.Array, returns: jax.Array) -> jax.Array:
    """Ridge regression of the returns on the features (garage's LinearFeatureBaseline, whose ridge is
    absolute; ours is on the per-sample second moments, so it does not depend on the batch size); zeros
    if the solve is not finite."""
    x = baseline_features(obs).reshape(-1, num_features(obs.shape[-1]))
    y = returns.reshape(-1)
    n = x.shape[0]
    w = _solve(x.T @ x / n + BASELINE_RIDGE * jnp.eye(x.shape[1]), x.T @ y / n)
    return jnp.where(jnp.all(jnp.isfinite(w)), w, 0.0)


def trajectory_batch(
    traj: Transition, normalize, reward_scaler: RewardScaler, config: Config, baseline: jax.Array | None = None
) -> tuple[dict, jax.Array]:
    """The [T, M] batch (normalised obs, action, Ψ) of one rollout and the baseline's weights: those
    given, or (None) fitted on this rollout's own reward-to-go."""
    obs = normalize(traj.obs)
    rewards = reward_scaler.scale(traj.reward) if config.scale_rewards else traj.reward
    returns = segment_reward_to_go(rewards, traj.terminated, traj.done, config.gamma)
    if baseline is None:
        baseline = fit_baseline(obs, returns)
    psi = returns - baseline_features(obs) @ baseline
    return {"obs": obs, "action": traj.action, "psi": psi}, baseline


# ---------------------------------------------------------------- one iteration


def total_envs(config: Config) -> int:
    """The main batch's envs, then the Hessian batch's: one set of training envs, stepped together."""
    return config.num_envs + (config.hessian_num_envs if uses_hessian(config) else 0)


def sample_batches(
    env: Env, env_state: EnvState, learner: Learner, theta, theta_hat, normalize, key, config: Config
) -> tuple[EnvState, Transition, Transition]:
    """T steps of every env: the first num_envs act with π_θ (the batch at θ_t), the others with π_θ̂ (the
    independent batch at θ̂_t). One rollout for both keeps one compiled env step (Brax compiles are
    slow) and refills every env's reset pool in one place."""
    n = config.num_envs

    def policy(obs, k):
        obs = normalize(obs)
        k_main, k_hat = jax.random.split(k)
        action, _ = gaussian_policy.sample(learner.replace(actor_params=theta), obs[:n], k_main, config)
        if obs.shape[0] > n:
            hat_action, _ = gaussian_policy.sample(learner.replace(actor_params=theta_hat), obs[n:], k_hat, config)
            action = jnp.concatenate([action, hat_action])
        return action, ()

    env_state, traj = rollout(env, env_state, policy, key, config.rollout_length)
    return env_state, jax.tree.map(lambda x: x[:, :n], traj), jax.tree.map(lambda x: x[:, n:], traj)


def iteration(state: onpolicy.State, env: Env, config: Config) -> tuple[onpolicy.State, dict]:
    learner = state.learner
    apply = learner.actor.apply
    theta, t = learner.actor_params, learner.updates
    normalize = normalizer(state)  # frozen for both batches, as are the reward scaler and the baseline
    key, k_q, k_rollout = jax.random.split(state.key, 3)

    # 2. θ̂_t = q θ_t + (1 − q) θ_{t−1} is known before any step is taken, so both batches run together
    theta_hat, _ = interpolation_point(k_q, theta, learner.prev_actor_params)
    env_state, traj, hess_traj = sample_batches(
        env, state.env_state, learner, theta, theta_hat, normalize, k_rollout, config
    )

    # 1. the batch at θ_t, the baseline fitted on it, and the gradient g_t
    batch, baseline = trajectory_batch(traj, normalize, state.reward_scaler, config)
    g = policy_gradient(theta, apply, batch)

    # 3. the Hessian-aided correction u_t along v = θ_t − θ_{t−1}, on the independent batch at θ̂_t
    if uses_hessian(config):
        v = jax.tree.map(jnp.subtract, theta, learner.prev_actor_params)
        hess_batch, _ = trajectory_batch(hess_traj, normalize, state.reward_scaler, config, baseline)
        u = hessian_correction(theta_hat, v, apply, hess_batch)
    else:
        u = jax.tree.map(jnp.zeros_like, g)

    # 4-5. recursive momentum, then the (normalised) step
    eta, gamma_t = momentum_weight(t, config), step_size(t, config)
    d = recursive_momentum(learner.momentum, u, g, eta)
    new_theta = ascent_step(theta, d, gamma_t, normalized(config))

    # after the update: the normaliser and the reward scaler learn from the batch at θ_t
    learner = learner.replace(actor_params=new_theta, prev_actor_params=theta, momentum=d, updates=t + 1)
    step = jax.tree.map(jnp.subtract, new_theta, theta)
    metrics = {
        "grad_norm": optax.global_norm(g),
        "correction_norm": optax.global_norm(u),
        "momentum_norm": optax.global_norm(d),
        "step_length": optax.global_norm(step),
        "step_size": gamma_t,
        "momentum_weight": eta,
        "policy_std": jnp.exp(new_theta["params"]["log_std"]).mean(),
    }
    return state.replace(
        learner=learner,
        obs_stats=onpolicy.updated_obs_stats(state.obs_stats, traj, config),
        reward_scaler=onpolicy.updated_reward_scaler(state.reward_scaler, traj, config),
        env_state=env_state,
        key=key,
    ), metrics


agent = Agent(
    Config=Config,
    init=init,
    iteration=iteration,
    act=gaussian_policy.act,
    steps_per_iteration=steps_per_iteration,
    warmup_steps=onpolicy.warmup_steps,
)
