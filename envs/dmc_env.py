"""DeepMind Control Suite tasks through MuJoCo Playground (`dmc/CheetahRun`), behind the same interface.

Playground's DMC environments are bare: its training wrapper adds the time limit, action repeat and
auto-reset. We take the episode length and action repeat from each task's `default_config()` and apply
them here (the time limit and fresh-start auto-reset through `pooled`, like Brax's). DMC tasks never
terminate; Playground's `done` flags only a simulation that produced NaNs, which we report as
`terminated` (there is nothing to bootstrap from). Per-step rewards lie in [0, 1], so returns over
Playground's 1000-step episodes lie in [0, 1000].

The backend is Playground's physics implementation: "jax" (MJX in JAX; the default everywhere, so that
curves from a CPU and a GPU come from the same physics code) or "warp" (MuJoCo Warp, Playground's own
default on NVIDIA GPUs; it needs the `mujoco-warp` package).
"""

from __future__ import annotations

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np

from .core import Env
from .pooled import pooled_env

# Playground 0.2's dm_control_suite.ALL_ENVS (a test checks this list against it), listed here so that
# naming a task does not import Playground.
TASKS = (
    "AcrobotSwingup",
    "AcrobotSwingupSparse",
    "BallInCup",
    "CartpoleBalance",
    "CartpoleBalanceSparse",
    "CartpoleSwingup",
    "CartpoleSwingupSparse",
    "CheetahRun",
    "FingerSpin",
    "FingerTurnEasy",
    "FingerTurnHard",
    "FishSwim",
    "HopperHop",
    "HopperStand",
    "HumanoidStand",
    "HumanoidWalk",
    "HumanoidRun",
    "PendulumSwingup",
    "PointMass",
    "ReacherEasy",
    "ReacherHard",
    "SwimmerSwimmer6",
    "WalkerRun",
    "WalkerStand",
    "WalkerWalk",
)
BACKENDS = ("jax", "warp")
DEFAULT_BACKEND = "jax"
_NEEDS = {"jax": ("mujoco_playground",), "warp": ("mujoco_playground", "mujoco_warp", "warp")}
_PACKAGES = {"mujoco_playground": "playground", "mujoco_warp": "mujoco-warp", "warp": "warp-lang"}


def missing_packages(backend: str) -> list[str]:
    """The pip packages a backend needs that this environment lacks (empty: it can run here)."""
    return [_PACKAGES[m] for m in _NEEDS[backend] if importlib.util.find_spec(m) is None]


def _strongly_typed(tree):
    """Every array leaf with a fixed (not weak) dtype: Playground's reset and step return some leaves
    weakly typed in one and not the other (the reward of ReacherEasy, a metric of HopperHop, the time
    of CheetahRun), so a scan carry or a jit cache would see two types for one state."""

    def fix(x):
        if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(fix, tree)


def _repeat_action(step, action_repeat: int):
    """Playground's action repeat (as brax's EpisodeWrapper applies it): the rewards of the repeats summed,
    done once any repeat is done."""
    if action_repeat == 1:
        return step

    def repeated(state, action):
        def body(carry, _):
            s, done = carry
            s = step(s, action)
            return (s, jnp.maximum(done, s.done)), s.reward

        (state, done), rewards = jax.lax.scan(body, (state, state.done), None, length=action_repeat)
        return state.replace(reward=jnp.sum(rewards), done=done)

    return repeated


def load_playground(task: str, backend: str):
    """Playground's environment for `task` on `backend`, and its default config."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mujoco_playground._src import dm_control_suite

        config = dm_control_suite.get_default_config(task)
        config.impl = backend
        return dm_control_suite.load(task, config=config), config


def make_dmc(task: str, backend: str = DEFAULT_BACKEND) -> Env:
    missing = missing_packages(backend)
    if missing:  # names.check_env says this before anything is built; here for direct callers
        raise ImportError(f"dmc backend {backend!r} needs {' and '.join(missing)} (pip install {' '.join(missing)})")
    env, config = load_playground(task, backend)
    action_repeat = int(config.action_repeat)
    episode_length = math.ceil(int(config.episode_length) / action_repeat)  # in agent steps

    def reset(key):
        return _strongly_typed(env.reset(key))

    step = _repeat_action(lambda s, a: _strongly_typed(env.step(s, a)), action_repeat)

    ranges = np.asarray(env.mj_model.actuator_ctrlrange, np.float64)
    limited = np.asarray(env.mj_model.actuator_ctrllimited, bool)
    low = tuple(float(r[0]) if lim else -1.0 for r, lim in zip(ranges, limited))
    high = tuple(float(r[1]) if lim else 1.0 for r, lim in zip(ranges, limited))
    return pooled_env(
        f"dmc/{task}",
        backend,
        int(env.observation_size),
        int(env.action_size),
        episode_length,
        reset,
        step,
        low,
        high,
        {
            "episode_length": episode_length,
            "action_repeat": action_repeat,
            "ctrl_dt": float(config.ctrl_dt),
            "sim_dt": float(config.sim_dt),
            "source": "mujoco_playground dm_control_suite.get_default_config",
        },
        # A DMC episode never ends before its time limit, so an env refilled at least once per
        # episode needs one fresh state; a pool of 8 refilled every 32 steps made 250 resets
        # per episode, and some tasks' resets run hundreds of physics steps (CheetahRun settles
        # for 200): stepping CheetahRun ran at 0.03x Playground's own wrapper.
        pool_size=1,
        refresh_every=episode_length,
    )
