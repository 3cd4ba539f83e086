"""Groups of training runs: the runs that share everything static (one compiled program), how a config is
named in results (its config id), and the checks that refuse a bad group before anything is compiled."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from pgjax import driver
from pgjax.config import ConfigError, build, is_static, to_dict
from pgjax.defaults import DEFAULT_EVAL_EPISODES, DEFAULT_MATMUL_PRECISION, DEFAULT_NUM_EVALS
from pgjax.names import check_agent, check_env
from pgjax.registry import get_agent

# float32 matmuls everywhere: JAX's "default" on recent NVIDIA GPUs runs float32 matmuls as TF32 or
# bf16 passes, so GPU curves would differ from CPU ones for a reason nobody chose.
MATMUL_PRECISIONS = ("highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default", "bfloat16")


@dataclasses.dataclass
class Group:
    """Runs that share everything static (one compiled program): seeds × float-hparam configs."""

    agent: str
    env: str
    backend: str
    seeds: list[int]
    configs: list[Any]
    num_evals: int = DEFAULT_NUM_EVALS
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    matmul_precision: str = DEFAULT_MATMUL_PRECISION

    @property
    def config_ids(self) -> list[str]:
        return [config_id(self.agent, self.env, self.backend, c) for c in self.configs]


def config_id(agent: str, env: str, backend: str, config) -> str:
    blob = json.dumps([agent, env, backend, to_dict(config)], sort_keys=True)
    return f"{agent}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def static_key(config) -> tuple:
    return tuple((f.name, getattr(config, f.name)) for f in dataclasses.fields(config) if is_static(f))


def check_matmul_precision(precision: str) -> str:
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"unknown matmul precision {precision!r}; choose one of {', '.join(MATMUL_PRECISIONS)}")
    return precision


def make_group(
    agent: str,
    env: str,
    backend: str | None,
    seeds: list[int],
    overrides: list[dict],
    num_evals: int = DEFAULT_NUM_EVALS,
    eval_episodes: int = DEFAULT_EVAL_EPISODES,
    matmul_precision: str = DEFAULT_MATMUL_PRECISION,
) -> list[Group]:
    """Validate names, configs and budgets (nothing is compiled) and split them into groups by static
    fields."""
    check_agent(agent)
    env, backend = check_env(env, backend)
    if not seeds:
        raise ConfigError("at least one seed is needed (--seeds must be >= 1)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct (got {seeds})")
    if num_evals < 1 or eval_episodes < 1:
        raise ConfigError("num_evals and eval_episodes must be >= 1")
    check_matmul_precision(matmul_precision)
    module = get_agent(agent)
    configs = [build(module.Config, o, agent) for o in overrides]
    groups: dict[tuple, Group] = {}
    for c in configs:
        driver.make_schedule(module, c, num_evals)  # refuses a budget that holds no iteration
        groups.setdefault(
            static_key(c),
            Group(
                agent=agent,
                env=env,
                backend=backend,
                seeds=list(seeds),
                configs=[],
                num_evals=num_evals,
                eval_episodes=eval_episodes,
                matmul_precision=matmul_precision,
            ),
        )
        groups[static_key(c)].configs.append(c)
    return list(groups.values())
