"""Environments behind one functional interface: `make("gymnax/Pendulum-v1")`, `make("brax/hopper")`,
`make("dmc/CheetahRun")`."""

from __future__ import annotations

from .brax_env import BACKENDS as BRAX_BACKENDS
from .brax_env import DEFAULT_BACKEND as DEFAULT_BRAX_BACKEND
from .brax_env import TASKS as BRAX_TASKS
from .brax_env import make_brax
from .core import Env, EnvState, EpisodeStats, batch_reset, batch_step, refresh
from .dmc_env import BACKENDS as DMC_BACKENDS
from .dmc_env import DEFAULT_BACKEND as DEFAULT_DMC_BACKEND
from .dmc_env import TASKS as DMC_TASKS
from .dmc_env import make_dmc, missing_packages
from .gymnax_env import TASKS as GYMNAX_TASKS
from .gymnax_env import make_gymnax

ENV_NAMES = (
    tuple(f"gymnax/{t}" for t in GYMNAX_TASKS)
    + tuple(f"brax/{t}" for t in BRAX_TASKS)
    + tuple(f"dmc/{t}" for t in DMC_TASKS)
)
FAMILY_BACKENDS = {"gymnax": ("gymnax",), "brax": BRAX_BACKENDS, "dmc": DMC_BACKENDS}
_DEFAULT_BACKENDS = {"gymnax": "gymnax", "brax": DEFAULT_BRAX_BACKEND, "dmc": DEFAULT_DMC_BACKEND}


def family(name: str) -> str:
    return name.split("/", 1)[0]


def default_backend(name: str) -> str:
    return _DEFAULT_BACKENDS[family(name)]


def backends_for(name: str) -> tuple[str, ...]:
    return FAMILY_BACKENDS[family(name)]


def unavailable_reason(name: str, backend: str) -> str | None:
    """Why `backend` cannot run `name` in this Python environment (None: it can)."""
    if family(name) == "dmc":
        missing = missing_packages(backend)
        if missing:
            return f"needs {' and '.join(missing)}, not installed here (pip install {' '.join(missing)})"
    return None


def make(name: str, backend: str | None = None) -> Env:
    """Build an environment by its `family/task` name; `backend` picks brax's or Playground's physics."""
    if name not in ENV_NAMES:
        raise KeyError(name)
    kind, task = name.split("/", 1)
    if kind == "gymnax":
        return make_gymnax(task)
    if kind == "dmc":
        return make_dmc(task, backend or DEFAULT_DMC_BACKEND)
    return make_brax(task, backend or DEFAULT_BRAX_BACKEND)


__all__ = [
    "Env",
    "EnvState",
    "EpisodeStats",
    "ENV_NAMES",
    "make",
    "batch_reset",
    "batch_step",
    "refresh",
    "default_backend",
    "backends_for",
    "unavailable_reason",
    "family",
    "BRAX_BACKENDS",
    "DMC_BACKENDS",
    "GYMNAX_TASKS",
    "BRAX_TASKS",
    "DMC_TASKS",
]
