"""What an agent is, as code: the one record the driver, the runner and the Python API use.

An agent file builds its `Agent` with its family loop (`pgjax.onpolicy.agent`, `pgjax.offpolicy.agent`),
which supplies init, iteration and the schedule's sizes from the file's own pieces (its networks, losses,
update and `act`), and binds it to the module-level name `agent`; the registry checks that record when the
agent is first loaded. What of a state is the policy and what is replay is found by type: every training
env state (`pgjax.envs.EnvState`) and every replay buffer (`pgjax.replay.is_replay`) wherever it sits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from pgjax.envs import EnvState
from pgjax.replay import is_replay


@dataclasses.dataclass(frozen=True, kw_only=True)
class Agent:
    """One training run is `init` once, then `iteration` over and over (jitted, vmapped over seeds and float
    hyperparameters). `act` is the policy evaluation and saved policies use; it reads only the state's
    `policy_state`. Every iteration takes `steps_per_iteration(config)` env steps after
    `warmup_steps(config)`, and the run stops at `config.total_steps`: the driver's schedule is built from
    those, never from the agent's own loop."""

    Config: type  # a config dataclass (`pgjax.config`) with a `total_steps` field and a `problems()` check
    init: Callable[[jax.Array, Any, Any], Any]  # (key, env, config) -> state
    iteration: Callable[[Any, Any, Any], tuple[Any, dict]]  # (state, env, config) -> (state, metrics)
    act: Callable[..., jax.Array]  # (policy state, obs, key, config, deterministic=False) -> action in [-1, 1]
    steps_per_iteration: Callable[[Any], int]  # config -> env steps per iteration
    warmup_steps: Callable[[Any], int]  # config -> env steps before the first iteration

    @staticmethod
    def policy_state(state):
        """What `act` reads of a state: all of it but the training envs and the replay buffers."""
        return jax.tree.map(lambda x: None if not_policy(x) else x, state, is_leaf=not_policy)

    @staticmethod
    def replay_leaves(state) -> list:
        """The arrays (or their shapes) of a state's replay buffers."""
        buffers = [x for x in jax.tree.leaves(state, is_leaf=is_replay) if is_replay(x)]
        return jax.tree.leaves(buffers)


def not_policy(x) -> bool:
    """A training env state or a replay buffer: part of a run's state that no policy reads."""
    return isinstance(x, EnvState) or is_replay(x)


CALLABLE_MEMBERS = ("init", "iteration", "act", "steps_per_iteration", "warmup_steps")


def problems(agent: Any) -> list[str]:
    """What keeps `agent` from being an `Agent` the machinery can run (empty for a complete one)."""
    if not isinstance(agent, Agent):
        return [f"is a {type(agent).__name__}, not a pgjax.contract.Agent (build it with its family loop's agent())"]
    out = [f"{m} is not callable" for m in CALLABLE_MEMBERS if not callable(getattr(agent, m))]
    config = agent.Config
    if not dataclasses.is_dataclass(config) or "total_steps" not in {f.name for f in dataclasses.fields(config)}:
        out.append(f"Config {getattr(config, '__name__', config)!r} is not a config dataclass with total_steps")
    elif not callable(getattr(config, "problems", None)):
        out.append("Config has no problems() check")
    return out
