"""Small budgets that exercise the whole train loop in seconds, and one compiled `train` per trainer.

`jax.jit(trainer.train)` on a fresh bound method compiles again on every call, and tiny_trainer used
to build a fresh trainer for every test: with nine agents the driver tests alone compiled ~90 programs.
The same (agent, env, evaluations, overrides) now share one trainer and its jitted `train`, so every
seed and every float config of one layout reuses one compile within the test session."""

import functools

import jax

from pgjax import driver
from pgjax.config import build
from pgjax.envs import make
from pgjax.registry import get_agent

# XLA:CPU's optimising backend takes most of the compile time of a physics step or a whole tiny train.
# Tests that check what a program computes, not how fast, compile without it: the same operations, in
# less compile time (docs/speed.md).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

TINY = {
    "ppo": {"num_envs": 4, "rollout_length": 8, "num_epochs": 2, "num_minibatches": 2, "total_steps": 4 * 8 * 6},
    "sac": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "dsact": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "mdpo_on": {
        "num_envs": 4,
        "rollout_length": 8,
        "num_epochs": 2,
        "num_minibatches": 2,
        "sgd_steps": 3,
        "total_steps": 4 * 8 * 6,
    },
    "mdpo_off": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "pmoe_sac": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "pmoe_ppo": {
        "num_envs": 4,
        "rollout_length": 8,
        "num_epochs": 2,
        "num_minibatches": 2,
        "q_hidden_sizes": "16,16",
        "total_steps": 4 * 8 * 6,
    },
    "pg_rainbow": {
        "num_envs": 4,
        "rollout_length": 8,
        "num_epochs": 2,
        "num_minibatches": 2,
        "iqn_batch_size": 16,
        "iqn_updates": 2,
        "replay_rollouts": 2,
        "iqn_hidden_sizes": "16,16",
        "total_steps": 4 * 8 * 6,
    },
    "nharpg": {
        "num_envs": 4,
        "rollout_length": 8,
        "hessian_num_envs": 2,
        "hidden_sizes": "16,16",
        "total_steps": (4 + 2) * 8 * 6,
    },
}


def tiny_config(agent_name: str, **overrides):
    return build(get_agent(agent_name).Config, {**TINY[agent_name], **overrides}, agent_name)


def tiny_trainer(agent_name: str, env_name: str = "gymnax/Pendulum-v1", num_evals: int = 3, **overrides):
    return _tiny_trainer(agent_name, env_name, num_evals, tuple(sorted(overrides.items())))


@functools.cache
def _tiny_trainer(agent_name: str, env_name: str, num_evals: int, overrides: tuple):
    agent = get_agent(agent_name)
    config = build(agent.Config, {**TINY[agent_name], **dict(overrides)}, agent_name)
    env = make(env_name)
    trainer = driver.Trainer(agent, env, driver.make_schedule(agent, config, num_evals), eval_episodes=2)
    return trainer, config


@functools.cache
def jitted_train(trainer: driver.Trainer):
    return jax.jit(trainer.train, compiler_options=FAST_COMPILE)


def train_one(trainer, config, seed: int):
    return jitted_train(trainer)(jax.random.PRNGKey(seed), config)


def toml_value(value) -> str:
    """A TINY value as TOML: "16,16" (the CLI's list form) becomes [16, 16]."""
    if isinstance(value, str) and "," in value:
        return "[" + ", ".join(value.split(",")) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def tiny_sweep(name: str, ppo_steps: int, sac_steps: int, num_evals: int, ppo=None, ppo_grid: str = "") -> str:
    """The tests' sweep file: PPO then SAC on gymnax Pendulum with TINY's networks and batches (`ppo` overrides
    PPO's), 2 seeds, 2 evaluation episodes; `ppo_grid` a TOML line such as 'grid = { lr = [1e-4, 3e-4] }'."""

    def run(agent: str, steps: int, overrides: dict, extra: str) -> str:
        config = {k: v for k, v in {**TINY[agent], **overrides}.items() if k != "total_steps"}
        table = ", ".join(f"{k} = {toml_value(v)}" for k, v in config.items())
        return (
            f'[[run]]\nagent = "{agent}"\nenv = "gymnax/Pendulum-v1"\nsteps = {steps}\nconfig = {{ {table} }}\n{extra}'
        )

    header = f'name = "{name}"\nseeds = 2\nnum_evals = {num_evals}\neval_episodes = 2\n'
    return (
        header + run("ppo", ppo_steps, ppo or {}, ppo_grid + "\n" if ppo_grid else "") + run("sac", sac_steps, {}, "")
    )
