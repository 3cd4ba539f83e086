"""Agent names -> modules implementing the train contract (Config, init, iteration, act)."""

from __future__ import annotations

import importlib
from types import ModuleType

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
    return importlib.import_module(AGENT_MODULES[name])
