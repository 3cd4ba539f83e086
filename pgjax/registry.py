"""Agent names -> the modules whose `agent` is their `pgjax.contract.Agent` record."""

from __future__ import annotations

import importlib

from pgjax.contract import Agent, problems

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


def get_agent(name: str) -> Agent:
    """The agent's record, checked against the contract: an agent added without one of its members
    is refused here, by name, rather than failing inside a jitted program."""
    module = importlib.import_module(AGENT_MODULES[name])
    agent = getattr(module, "agent", None)
    wrong = problems(agent) if agent is not None else ["has no module-level `agent` (its pgjax.contract.Agent)"]
    if wrong:
        raise TypeError(f"agent {name!r} ({module.__name__}): {'; '.join(wrong)}")
    return agent
