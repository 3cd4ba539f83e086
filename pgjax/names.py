"""Resolving agent and environment names, with the closest valid names suggested on a typo."""
from __future__ import annotations

import difflib

from pgjax.config import ConfigError
from pgjax.envs import ENV_NAMES, backends_for, default_backend, unavailable_reason
from pgjax.registry import AGENT_NAMES


def _closest(name: str, valid: tuple[str, ...]) -> list[str]:
    lowered = {v.lower(): v for v in valid}
    lowered.update({v.split("/")[-1].lower(): v for v in valid})
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.4)
    return list(dict.fromkeys(lowered[h] for h in hits))


def did_you_mean(name: str, valid: tuple[str, ...]) -> str:
    close = _closest(name, valid)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def check_agent(name: str) -> str:
    if name not in AGENT_NAMES:
        raise ConfigError(f"unknown agent {name!r}{did_you_mean(name, AGENT_NAMES)} "
                          f"(agents: {', '.join(AGENT_NAMES)}; `pgjax list` shows all)")
    return name


def check_env(name: str, backend: str | None = None) -> tuple[str, str]:
    """(env name, backend) after checking both; backend None picks the env's default."""
    if name not in ENV_NAMES:
        raise ConfigError(f"unknown environment {name!r}{did_you_mean(name, ENV_NAMES)} "
                          "(`pgjax list` shows all)")
    backend = backend or default_backend(name)
    valid = backends_for(name)
    if backend not in valid:
        raise ConfigError(f"unknown backend {backend!r} for {name}; choose one of {', '.join(valid)}")
    why = unavailable_reason(name, backend)
    if why:
        others = [b for b in valid if b != backend and not unavailable_reason(name, b)]
        raise ConfigError(f"backend {backend!r} for {name} {why}"
                          + (f"; available: {', '.join(others)}" if others else ""))
    return name, backend
