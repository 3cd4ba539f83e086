"""Environments behind one functional interface: `make("gymnax/Pendulum-v1")`, `make("brax/hopper")`."""
from __future__ import annotations

from .brax_env import BACKENDS as BRAX_BACKENDS
from .brax_env import DEFAULT_BACKEND as DEFAULT_BRAX_BACKEND
from .brax_env import TASKS as BRAX_TASKS
from .brax_env import make_brax
from .core import Env, EnvState, EpisodeStats, batch_reset, batch_step, refresh
from .gymnax_env import TASKS as GYMNAX_TASKS
from .gymnax_env import make_gymnax

ENV_NAMES = tuple(f"gymnax/{t}" for t in GYMNAX_TASKS) + tuple(f"brax/{t}" for t in BRAX_TASKS)


def default_backend(name: str) -> str:
    return "gymnax" if name.startswith("gymnax/") else DEFAULT_BRAX_BACKEND


def backends_for(name: str) -> tuple[str, ...]:
    return ("gymnax",) if name.startswith("gymnax/") else BRAX_BACKENDS


def make(name: str, backend: str | None = None) -> Env:
    """Build an environment by its `backend/task` name; `backend` picks brax's physics pipeline."""
    if name not in ENV_NAMES:
        raise KeyError(name)
    family, task = name.split("/", 1)
    if family == "gymnax":
        return make_gymnax(task)
    return make_brax(task, backend or DEFAULT_BRAX_BACKEND)


__all__ = ["Env", "EnvState", "EpisodeStats", "ENV_NAMES", "make", "batch_reset", "batch_step", "refresh",
           "default_backend", "backends_for", "BRAX_BACKENDS", "GYMNAX_TASKS", "BRAX_TASKS"]
