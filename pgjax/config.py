"""Agent configs: static fields vs float hyperparameters, overrides from the command line or a
sweep file, and the checks that reject bad input before anything is compiled."""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Iterable

from flax import struct


class ConfigError(ValueError):
    """Bad user input: the message says what to change."""


def static(default: Any) -> Any:
    """A config field that changes shapes or control flow: part of the compiled program."""
    return struct.field(pytree_node=False, default=default)


def hyper(default: float) -> Any:
    """A float hyperparameter: a pytree leaf, so a batch of configs can be vmapped."""
    return struct.field(pytree_node=True, default=default)


def suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def fields(config_cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def is_static(field: dataclasses.Field) -> bool:
    return not field.metadata.get("pytree_node", True)


def float_fields(config_cls) -> list[str]:
    return [n for n, f in fields(config_cls).items() if not is_static(f)]


def _field_type(config_cls, name: str):
    return typing.get_type_hints(config_cls)[name]


def _coerce(value: Any, typ, where: str) -> Any:
    """Turn a CLI string or a TOML value into the field's type, or say why not."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where} must be a list of integers like 64,64 (got {value!r})")
        return tuple(_coerce(v, int, where) for v in value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false (got {value!r})")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer (got {value!r})")
        if isinstance(value, str):
            try:
                value = float(value.replace("_", ""))
            except ValueError:
                raise ConfigError(f"{where} must be an integer (got {value!r})") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer (got {value!r})")
        return value
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number (got {value!r})")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number (got {value!r})") from None
    if typ is str:
        return str(value)
    raise ConfigError(f"{where}: unsupported field type {typ}")


def check_field_name(config_cls, name: str, agent: str) -> dataclasses.Field:
    known = fields(config_cls)
    if name not in known:
        raise ConfigError(f"unknown config field {name!r} for {agent}{suggest(name, known)} "
                          f"(fields: {', '.join(sorted(known))})")
    return known[name]


def coerce_value(config_cls, name: str, value: Any, agent: str) -> Any:
    check_field_name(config_cls, name, agent)
    return _coerce(value, _field_type(config_cls, name), f"{agent} config field {name!r}")


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """`["lr=3e-4", "hidden_sizes=64,64"]` -> dict; the values stay strings until coerced."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set takes field=value (got {item!r})")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def build(config_cls, overrides: dict[str, Any], agent: str):
    """A validated config from the agent's defaults plus overrides."""
    values = {k: coerce_value(config_cls, k, v, agent) for k, v in overrides.items()}
    config = config_cls(**values)
    validate(config, agent)
    return config


def validate(config, agent: str) -> None:
    problems = config.problems()
    if problems:
        raise ConfigError(f"invalid {agent} config: " + "; ".join(problems))


def require(problems: list[str], condition: bool, message: str) -> None:
    if not condition:
        problems.append(message)


def check_positive(problems: list[str], config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(problems, value > 0, f"{name} must be > 0 (got {value})")


def check_unit_interval(problems: list[str], config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(problems, 0.0 <= value <= 1.0, f"{name} must be in [0, 1] (got {value})")


def check_choice(problems: list[str], config, name: str, choices) -> None:
    value = getattr(config, name)
    require(problems, value in choices, f"{name} must be one of {', '.join(choices)} (got {value!r})")


def check_network(problems: list[str], config) -> None:
    """hidden_sizes and activation, the network fields every agent has."""
    from pgjax.networks import ACTIVATIONS

    require(problems, all(h > 0 for h in config.hidden_sizes), "hidden_sizes must be positive")
    check_choice(problems, config, "activation", tuple(ACTIVATIONS))


def to_dict(config) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else (float(v) if not is_static(f) else v)
    return out
