"""The agent contract as code: every registered agent satisfies it, and one that does not is refused by name."""

import ast
import types
from pathlib import Path

import pytest

from pgjax import registry
from pgjax.contract import AGENT_MEMBERS, Agent


@pytest.mark.parametrize("name", registry.AGENT_NAMES)
def test_every_registered_agent_satisfies_the_contract(name):
    module = registry.get_agent(name)
    assert isinstance(module, Agent)
    assert all(callable(getattr(module, m)) for m in AGENT_MEMBERS)


def test_agent_files_import_the_shared_pieces_from_pgjax_not_each_other():
    """What two agents share lives in pgjax/ (ppo_core, sac_core, ...), so each file reads on its own."""
    agents = Path(__file__).parents[1] / "agents"
    for path in agents.glob("*.py"):
        imports = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [n.module or "" for n in imports if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in imports if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in names if m.startswith("pgjax.agents")], path.name


def test_an_agent_without_a_member_is_refused_naming_it(monkeypatch):
    incomplete = types.ModuleType("incomplete")
    incomplete.Config = object
    incomplete.init = incomplete.iteration = incomplete.steps_per_iteration = incomplete.warmup_steps = print
    monkeypatch.setitem(registry.AGENT_MODULES, "incomplete", "incomplete")
    monkeypatch.setitem(__import__("sys").modules, "incomplete", incomplete)
    with pytest.raises(TypeError, match="lacks act of pgjax.contract.Agent"):
        registry.get_agent("incomplete")
