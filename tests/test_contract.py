"""The agent contract as code: every registered agent satisfies it, and one that does not is refused by name."""

import types

import pytest

from pgjax import registry
from pgjax.contract import AGENT_MEMBERS, Agent


@pytest.mark.parametrize("name", registry.AGENT_NAMES)
def test_every_registered_agent_satisfies_the_contract(name):
    module = registry.get_agent(name)
    assert isinstance(module, Agent)
    assert all(callable(getattr(module, m)) for m in AGENT_MEMBERS)


def test_an_agent_without_a_member_is_refused_naming_it(monkeypatch):
    incomplete = types.ModuleType("incomplete")
    incomplete.Config = object
    incomplete.init = incomplete.iteration = incomplete.steps_per_iteration = incomplete.warmup_steps = print
    monkeypatch.setitem(registry.AGENT_MODULES, "incomplete", "incomplete")
    monkeypatch.setitem(__import__("sys").modules, "incomplete", incomplete)
    with pytest.raises(TypeError, match="lacks act of pgjax.contract.Agent"):
        registry.get_agent("incomplete")
