"""Resolving agent and environment names, with the closest valid names suggested on a typo."""

from __future__ import annotations

from pgjax.config import ConfigError, did_you_mean
from pgjax.envs import ENV_NAMES, backends_for, default_backend, unavailable_reason
from pgjax.registry import AGENT_NAMES


def check_agent(name: str) -> str:
    if name not in AGENT_NAMES:
        raise ConfigError(
            f"unknown agent {name!r}{did_you_mean(name, AGENT_NAMES)} "
            f"(agents: {', '.join(AGENT_NAMES)}; `pgjax list` shows all)"
        )
    return name


def check_env(name: str, backend: str | None = None) -> tuple[str, str]:
    """(env name, backend) after checking both; backend None picks the env's default."""
    if name not in ENV_NAMES:
        raise ConfigError(f"unknown environment {name!r}{did_you_mean(name, ENV_NAMES)} (`pgjax list` shows all)")
    backend = backend or default_backend(name)
    valid = backends_for(name)
    if backend not in valid:
        raise ConfigError(f"unknown backend {backend!r} for {name}; choose one of {', '.join(valid)}")
    why = unavailable_reason(name, backend)
    if why:
        others = [b for b in valid if b != backend and not unavailable_reason(name, b)]
        raise ConfigError(
            f"backend {backend!r} for {name} {why}" + (f"; available: {', '.join(others)}" if others else "")
        )
    return name, backend
