"""The agent contract as code: every registered agent is one complete record, one that is not is refused by
name, its saved policy holds no replay and no env state, and a variant imports its base agent one way only."""

import ast
import dataclasses
import types
from pathlib import Path

import jax
import pytest
from helpers import tiny_config

from pgjax import registry
from pgjax.contract import Agent
from pgjax.envs import EnvState, make
from pgjax.replay import is_replay


@pytest.mark.parametrize("name", registry.AGENT_NAMES)
def test_every_registered_agent_is_a_complete_record(name):
    agent = registry.get_agent(name)
    assert isinstance(agent, Agent)
    assert all(callable(getattr(agent, m)) for m in ("init", "iteration", "act", "steps_per_iteration", "warmup_steps"))
    assert "total_steps" in {f.name for f in dataclasses.fields(agent.Config)}


@pytest.mark.parametrize("name", registry.AGENT_NAMES)
def test_the_saved_policy_of_every_agent_holds_no_replay_and_no_env_state(name):
    """What the best-policy copy and the saved policies hold (Agent.policy_state) never carries a replay
    buffer or the training envs, wherever the agent keeps them (PG-Rainbow keeps its IQN's replay in its
    learner); the run state itself does hold them, so the test would see them."""
    agent = registry.get_agent(name)
    config = tiny_config(name)
    env = make("gymnax/Pendulum-v1")
    state = jax.eval_shape(lambda k: agent.init(k, env, config), jax.random.PRNGKey(0))

    def found(tree, kind):
        return [x for x in jax.tree.leaves(tree, is_leaf=kind) if kind(x)]

    def env_state(x):
        return isinstance(x, EnvState)

    assert found(state, env_state)
    assert bool(found(state, is_replay)) == (name in ("sac", "dsact", "mdpo_off", "pmoe_sac", "pg_rainbow"))
    policy = Agent.policy_state(state)
    assert not found(policy, env_state) and not found(policy, is_replay)
    assert jax.tree.leaves(policy) and not Agent.replay_leaves(policy)


def agent_imports(path: Path) -> list[str]:
    """The agents (pgjax.agents.X) an agent file imports."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pgjax.agents":
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pgjax.agents."):
            out.append(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out += [a.name.split(".")[2] for a in node.names if a.name.startswith("pgjax.agents.")]
    return out


AGENTS_DIR = Path(__file__).parents[1] / "agents"


def agent_import_graph() -> dict[str, set[str]]:
    return {p.stem: set(agent_imports(p)) for p in AGENTS_DIR.glob("*.py") if p.stem != "__init__"}


def has_circle(graph: dict[str, set[str]]) -> bool:
    """Whether following imports from some agent leads back to it (a depth-first search for a back edge)."""
    done, on_path = set(), set()

    def visit(node) -> bool:
        if node in on_path:
            return True
        if node in done:
            return False
        on_path.add(node)
        found = any(visit(n) for n in graph.get(node, ()))
        on_path.discard(node)
        done.add(node)
        return found

    return any(visit(n) for n in graph)


BASES = ("ppo", "sac")  # the agents others build on; a base reads on its own next to its paper


def test_a_variant_imports_its_base_agent_a_base_imports_no_agent_and_no_import_circles():
    graph = agent_import_graph()
    assert {base: graph[base] for base in BASES} == {base: set() for base in BASES}
    assert {name: deps for name, deps in graph.items() if deps} == {
        "pmoe_ppo": {"ppo"},
        "pg_rainbow": {"ppo"},
        "pmoe_sac": {"sac"},
    }
    assert not has_circle(graph)


def test_the_circle_check_finds_a_circle():
    assert has_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) and has_circle({"a": {"a"}})
    assert not has_circle({"a": {"b"}, "b": {"c"}, "d": {"b"}})


def test_an_agent_module_without_its_record_is_refused_naming_it(monkeypatch):
    loose = types.ModuleType("loose")
    loose.Config = object
    loose.init = loose.iteration = loose.act = loose.steps_per_iteration = loose.warmup_steps = print
    monkeypatch.setitem(registry.AGENT_MODULES, "loose", "loose")
    monkeypatch.setitem(__import__("sys").modules, "loose", loose)
    with pytest.raises(TypeError, match="agent 'loose' \\(loose\\): has no module-level `agent`"):
        registry.get_agent("loose")


def test_a_record_with_a_bad_member_is_refused_naming_it(monkeypatch):
    ppo = registry.get_agent("ppo")
    broken = types.ModuleType("broken")
    broken.agent = dataclasses.replace(ppo, act=None, Config=int)
    monkeypatch.setitem(registry.AGENT_MODULES, "broken", "broken")
    monkeypatch.setitem(__import__("sys").modules, "broken", broken)
    with pytest.raises(TypeError, match="act is not callable; Config 'int' is not a config dataclass with total_steps"):
        registry.get_agent("broken")
