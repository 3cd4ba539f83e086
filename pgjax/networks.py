"""Small flax.linen networks shared by the agents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

# "gelu" is the exact erf form (torch's default, which the DSAC-T reference uses); jax's default is the
# tanh approximation, available as "gelu_tanh".
ACTIVATIONS: dict[str, Callable] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "swish": nn.swish,
    "gelu": partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": jax.nn.gelu,
}


def orthogonal(scale: float) -> Callable:
    """flax's orthogonal initializer, but never batched: vmapped over seeds, its LAPACK QR becomes
    one batched call that deadlocks jaxlib 0.10's XLA:CPU (both pool threads in
    lapack_sgeqrf_ffi waiting on the pool they run on). A sequential map gives the same matrices."""
    base = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))(key)

    return init


# How layers' weights start: "orthogonal" (hidden layers gain sqrt 2, the head the network's out_scale; the
# 37-details PPO and CleanRL), or "lecun_uniform" for every layer (Brax's trainers).
KERNEL_INITS = ("orthogonal", "lecun_uniform")


def kernel_initializer(name: str, scale: float) -> Callable:
    return orthogonal(scale) if name == "orthogonal" else nn.initializers.lecun_uniform()


class MLP(nn.Module):
    """Hidden layers, then a linear head; biases start at 0. With `layer_norm`, each hidden layer's
    activations are layer-normalised (after the activation, as Brax's SAC critics do)."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "tanh"
    out_scale: float = 1.0
    weight_init: str = "orthogonal"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(
                nn.Dense(
                    size,
                    kernel_init=kernel_initializer(self.weight_init, np.sqrt(2.0)),
                    bias_init=nn.initializers.zeros,
                )(x)
            )
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(
            self.out_size,
            kernel_init=kernel_initializer(self.weight_init, self.out_scale),
            bias_init=nn.initializers.zeros,
        )(x)


class GaussianActor(nn.Module):
    """Mean from an MLP, state-independent log-std parameter (PPO's continuous-action policy)."""

    hidden_sizes: Sequence[int]
    action_size: int
    activation: str = "tanh"
    init_log_std: float = 0.0
    weight_init: str = "orthogonal"
    squashed = False  # actions are the Gaussian samples themselves (the env clips them)

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden_sizes, self.action_size, self.activation, out_scale=0.01, weight_init=self.weight_init)(
            obs
        )
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class SoftplusTanhGaussianActor(nn.Module):
    """Brax's PPO and SAC policy (`NormalTanhDistribution`): one MLP gives the mean and a raw scale per action,
    std = softplus(raw) + 0.001 (state-dependent), and the action is tanh of the Gaussian sample.
    Returns (mean, log std) of the Gaussian before the squash."""

    hidden_sizes: Sequence[int]
    action_size: int
    activation: str = "swish"
    weight_init: str = "lecun_uniform"
    min_std: float = 0.001
    squashed = True

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(
            self.hidden_sizes, 2 * self.action_size, self.activation, out_scale=0.01, weight_init=self.weight_init
        )(obs)
        mean, raw_scale = jnp.split(out, 2, axis=-1)
        return mean, jnp.log(jax.nn.softplus(raw_scale) + self.min_std)


class GaussianReturnCritic(nn.Module):
    """Z(s, a) ~ N(Q, σ²): an MLP on the concatenation with two outputs, the mean and softplus(raw) = σ."""

    hidden_sizes: Sequence[int]
    activation: str = "gelu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2, self.activation)(jnp.concatenate([obs, action], -1))
        return out[..., 0], jax.nn.softplus(out[..., 1])


class ImplicitQuantileNetwork(nn.Module):
    """Z(s, a; τ) = g(e(s, a) ⊙ c(τ)) (Dabney et al. 2018), for continuous actions: the trunk e is a ReLU
    MLP on the concatenation (s, a), c(τ)_j = ReLU(Σ_{i=1..n} cos(π i τ) w_ij + b_j) embeds each τ, and
    the head g is linear. (Dopamine's head has a hidden layer; with the action inside the trunk that
    layer would run once per (state, action, τ) triple, 128 times per state for PG-Rainbow's
    features, for little gain in what a sum of 64 learned τ-basis functions can represent.)
    Shapes: e(s, a) is [..., H]; taus are [..., N], or [N] shared by all; the output is [..., N]."""

    hidden_sizes: Sequence[int]
    num_cosines: int = 64

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, taus: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], -1)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
        cosines = jnp.cos(jnp.pi * jnp.arange(1, self.num_cosines + 1) * taus[..., None])
        embedding = nn.relu(nn.Dense(x.shape[-1])(cosines))
        # the linear head g(e ⊙ c) = Σ_h w_h e_h c_h + b written so that the [..., N, H] product is never
        # stored (a Dense layer on it would write out 1 GB per call for PG-Rainbow's features): one
        # matmul when the τ's are shared, else a multiply-and-sum that XLA fuses into one pass
        w = self.param("head_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 1))[:, 0]
        b = self.param("head_bias", nn.initializers.zeros, ())
        if taus.ndim == 1:
            return (x * w) @ embedding.T + b
        return (x[..., None, :] * embedding * w).sum(-1) + b


class SquashedGaussianActor(nn.Module):
    """Mean and clamped log-std from one MLP (SAC's tanh-Gaussian policy, before the squash)."""

    hidden_sizes: Sequence[int]
    action_size: int
    activation: str = "relu"
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    weight_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2 * self.action_size, self.activation, weight_init=self.weight_init)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


class MixtureActor(nn.Module):
    """K Gaussian experts and their gate, in one forward pass (PMOE): gating logits from one linear
    layer on the observation; the experts share one trunk whose last layer holds every expert's mean
    (and log-std, if state-dependent). With state-dependent std the trunk is exactly SAC's actor
    network with 2·K·|A| outputs (K = 1 is SAC's actor); otherwise each expert has a state-independent
    log-std parameter (PPO's). Returns (logits [.., K], mean [.., K, |A|], log_std [.., K, |A|])."""

    hidden_sizes: Sequence[int]
    action_size: int
    num_experts: int
    activation: str = "relu"
    state_dependent_std: bool = True
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        k, a = self.num_experts, self.action_size
        if self.state_dependent_std:
            out = MLP(self.hidden_sizes, 2 * k * a, self.activation)(obs)
            mean, log_std = jnp.split(out.reshape(out.shape[:-1] + (k, 2 * a)), 2, axis=-1)
            log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        else:
            out = MLP(self.hidden_sizes, k * a, self.activation, out_scale=0.01)(obs)
            mean = out.reshape(out.shape[:-1] + (k, a))
            log_std = jnp.broadcast_to(self.param("log_std", nn.initializers.zeros, (k, a)), mean.shape)
        logits = nn.Dense(k, name="gate")(obs)
        return logits, mean, log_std


class QNetwork(nn.Module):
    """Q(s, a) as an MLP on the concatenation."""

    hidden_sizes: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False
    weight_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1, self.activation, layer_norm=self.layer_norm, weight_init=self.weight_init)(
            jnp.concatenate([obs, action], -1)
        )[..., 0]


def init_ensemble(module: nn.Module, key: jax.Array, n: int, *example):
    """n independently initialised parameter sets, stacked on a leading axis."""
    return jax.vmap(lambda k: module.init(k, *example))(jax.random.split(key, n))


def apply_ensemble(module: nn.Module, params, *inputs) -> jax.Array:
    """Outputs of every member of a stacked ensemble: leading axis = member."""
    return jax.vmap(lambda p: module.apply(p, *inputs))(params)


def optimizer_step(optimizer, grads, params, opt_state):
    """One step of an optax optimiser: -> (params after it, its new state)."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def polyak(target, online, tau):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
