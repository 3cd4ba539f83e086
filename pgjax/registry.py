"""Agent names -> modules implementing the agent contract (`pgjax.contract.Agent`)."""

from __future__ import annotations

import importlib
from types import ModuleType

from pgjax.contract import missing_members

AGENT_MODULES = {
    "ppo": "pgjax.agents.ppo",
    "sac": "pgjax.agents.sac",
    "dsact": "pgjax.agents.dsact",
    "mdpo_on": "pgjax.agents.mdpo_on",
    "mdpo_off": "pgjax.agents.mdpo_off",
    "pmoe_sac": "pgjax.agents.pmoe_sac",
    "pmoe_ppo": "pgjax.agents.pmoe_ppo",
    "pg_rainbow": "pgjax.agents.pg_rainbow",
    "nharpg": "pgjax.agents.nharpg",
}
AGENT_NAMES = tuple(AGENT_MODULES)


def get_agent(name: str) -> ModuleType:
    """The agent's module, checked against the contract: an agent added without one of its members
    is refused here, by name, rather than failing inside a jitted program."""
    module = importlib.import_module(AGENT_MODULES[name])
    missing = missing_members(module)
    if missing:
        raise TypeError(f"agent {name!r} ({module.__name__}) lacks {', '.join(missing)} of pgjax.contract.Agent")
    return module
