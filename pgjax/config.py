"""Agent configs: static fields vs float hyperparameters, overrides from the command line or a
sweep file, and the checks that reject bad input before anything is compiled."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable
from typing import Any

from flax import struct


class ConfigError(ValueError):
    """Bad user input: the message says what to change."""


def static(default: Any, meaning: str = "", *, added: bool = False) -> Any:
    """A config field that changes shapes or control flow: part of the compiled program. `meaning` is what
    `pgjax config` shows; `added` marks a field added after results were first written (see `to_dict`)."""
    return struct.field(pytree_node=False, default=default, metadata={"meaning": meaning, "added": added})


def hyper(default: float, meaning: str = "", *, added: bool = False) -> Any:
    """A float hyperparameter: a pytree leaf, so a batch of configs can be vmapped."""
    return struct.field(pytree_node=True, default=default, metadata={"meaning": meaning, "added": added})


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """ "; did you mean X or Y?" for the valid names closest to a typo (case and an "env/" prefix ignored),
    or "" when none is close: the one suggestion every name check (agents, envs, fields, presets) makes."""
    valid = list(valid)
    lowered = {v.lower(): v for v in valid}
    lowered.update({v.split("/")[-1].lower(): v for v in valid})
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.4)
    close = list(dict.fromkeys(lowered[h] for h in hits))
    return f"; did you mean {' or '.join(close)}?" if close else ""


def fields(config_cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def is_static(field: dataclasses.Field) -> bool:
    return not field.metadata.get("pytree_node", True)


def _field_type(config_cls, name: str):
    return typing.get_type_hints(config_cls)[name]


def _coerce(value: Any, typ, where: str) -> Any:
    """Turn a CLI string or a TOML value into the field's type, or say why not."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("x", ",").split(",") if v.strip()]
        elif isinstance(value, int) and not isinstance(value, bool):
            value = [value]  # --set hidden_sizes=64: one layer
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


def _declarations(config_cls, name: str):
    """The field `name` as each dataclass in the Config's MRO declares it, nearest first (an agent that only
    changes a default redeclares the field without repeating its meaning)."""
    for cls in config_cls.__mro__:
        declared = vars(cls).get("__dataclass_fields__", {})
        if name in declared:
            yield declared[name]


def field_meaning(config_cls, name: str) -> str:
    """The meaning declared with the field, by its Config or by the nearest Config it extends that gives one."""
    return next((f.metadata["meaning"] for f in _declarations(config_cls, name) if f.metadata.get("meaning")), "")


def is_added(config_cls, name: str) -> bool:
    """Whether the field was declared `added` by its Config or a Config it extends: added after results were
    first written, defaulting to what the agent did before it existed."""
    return any(f.metadata.get("added") for f in _declarations(config_cls, name))


def describe_fields(config_cls) -> list[dict]:
    """Every field of a Config: name, default, type, whether it is a float (a vmapped leaf: a sweep over
    it is one compiled program) or static (one program per value), and its meaning."""
    hints = typing.get_type_hints(config_cls)
    return [
        {
            "field": f.name,
            "default": f.default,
            "type": _type_name(hints[f.name]),
            "kind": "static" if is_static(f) else "float (vmappable)",
            "meaning": field_meaning(config_cls, f.name),
        }
        for f in dataclasses.fields(config_cls)
    ]


def _type_name(typ) -> str:
    return "list of int" if typing.get_origin(typ) is tuple else getattr(typ, "__name__", str(typ))


def check_field_name(config_cls, name: str, agent: str) -> dataclasses.Field:
    known = fields(config_cls)
    if name not in known:
        raise ConfigError(
            f"unknown config field {name!r} for {agent}{did_you_mean(name, known)} (fields: {', '.join(sorted(known))})"
        )
    return known[name]


def coerce_value(config_cls, name: str, value: Any, agent: str) -> Any:
    check_field_name(config_cls, name, agent)
    typ = _field_type(config_cls, name)
    return _coerce(value, typ, f"{agent} config field {name!r} ({_type_name(typ)})")


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """`["lr=3e-4", "hidden_sizes=[64, 64]", "anneal_lr=false", "activation=relu"]` -> dict: a value is
    read as TOML, as in sweep files, and kept as the string it is when it is not TOML (`relu`, `64,64`);
    the field's type is checked when the config is built."""
    import tomllib

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set takes field=value (got {item!r})")
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            out[key] = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            out[key] = value
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
    """The config as recorded in results (and hashed into its config id). An added field at its default
    means what the config meant before the field existed, so it is left out: results written earlier
    keep their ids and still resume."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if is_added(type(config), f.name) and v == f.default:
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else (float(v) if not is_static(f) else v)
    return out
