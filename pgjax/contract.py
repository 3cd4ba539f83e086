"""What an agent is, as code: the members the driver, the runner and the Python API use.

An agent is a module (or any object) with a `Config` class (static fields and float hyperparameters, see
`pgjax.config`) and five functions. The two family loops build four of them from an agent's own pieces
(`pgjax.onpolicy.agent`, `pgjax.offpolicy.agent`), so an agent file holds its networks, its losses, its
update and its `act`. The registry checks every agent against `Agent` when it is first loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax


@runtime_checkable
class Agent(Protocol):
    """One training run is `init` once, then `iteration` over and over (jitted, vmapped over seeds and float
    hyperparameters); its `State` carries the training envs as `env_state`, and `act` is the policy that
    evaluation and saved policies use. Every iteration takes `steps_per_iteration(config)` env steps after
    `warmup_steps(config)`; the driver's schedule is built from those two, never from the agent's own loop."""

    Config: type

    def init(self, key: jax.Array, env: Any, config: Any) -> Any: ...

    def iteration(self, state: Any, env: Any, config: Any) -> tuple[Any, dict]: ...

    def act(self, state: Any, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array: ...

    def steps_per_iteration(self, config: Any) -> int: ...

    def warmup_steps(self, config: Any) -> int: ...


AGENT_MEMBERS = ("Config", "init", "iteration", "act", "steps_per_iteration", "warmup_steps")


def missing_members(agent: Any) -> list[str]:
    """The members of `Agent` that `agent` lacks (empty for a complete agent)."""
    return [m for m in AGENT_MEMBERS if not hasattr(agent, m)]


class LoopFunctions(NamedTuple):
    """A family loop's share of an agent: init, iteration and the schedule's two sizes."""

    init: Callable
    iteration: Callable
    steps_per_iteration: Callable[[Any], int]
    warmup_steps: Callable[[Any], int]
