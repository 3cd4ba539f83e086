"""What a group needs of a device's memory (its run states, replay buffers among them, a checkpoint's copy and
the compiled programs' scratch space), what a device has, and the refusal of a group that does not fit."""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import numpy as np

from pgjax.config import ConfigError
from pgjax.contract import Agent
from pgjax.groups import Group
from pgjax.layout import runs_mesh
from pgjax.programs import prepare, run_shape_of
from pgjax.results import human_bytes


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """What one device holds for a group: its share of the run states (every agent state, replay buffers
    included: sharded evenly over the group's devices) and, once compiled, the largest scratch space
    (XLA's temporaries) of the group's programs. The run state is donated from chunk to chunk, so the
    sum is the group's peak."""

    run_state: int
    replay: int  # of run_state
    temporaries: int | None = None  # None: not compiled yet
    checkpoint_copy: int = 0  # a checkpoint copies the run state on the device while orbax writes it out

    @property
    def total(self) -> int:
        return self.run_state + self.checkpoint_copy + (self.temporaries or 0)

    def summary(self) -> dict:
        return {
            "total_bytes": self.total,
            "run_state_bytes": self.run_state,
            "replay_bytes": self.replay,
            "checkpoint_copy_bytes": self.checkpoint_copy,
            "temporaries_bytes": self.temporaries,
        }

    def describe(self) -> str:
        parts = [
            f"run state {human_bytes(self.run_state)}"
            + (f", {human_bytes(self.replay)} of it replay buffers" if self.replay else "")
        ]
        if self.checkpoint_copy:
            parts.append(f"a checkpoint's copy of it {human_bytes(self.checkpoint_copy)}")
        parts.append(
            f"compiled programs' scratch space {human_bytes(self.temporaries)}"
            if self.temporaries is not None
            else "the compiled programs' scratch space not counted yet"
        )
        return f"about {human_bytes(self.total)} per device ({'; '.join(parts)})"


def run_state_memory(
    run_shape, devices: int, temporaries: int | None = None, checkpoints: bool = False
) -> MemoryEstimate:
    """The per-device share of a group's run states of shape `run_shape` split over `devices` (and of the
    copy a checkpoint takes, with `checkpoints`)."""

    def size(x) -> int:
        return math.prod(x.shape) * np.dtype(x.dtype).itemsize

    total = sum(size(x) for x in jax.tree.leaves(run_shape))
    replay = sum(size(x) for x in Agent.replay_leaves(run_shape))
    share = -(-total // devices)
    return MemoryEstimate(share, -(-replay // devices), temporaries, share if checkpoints else 0)


def parse_bytes(text: str) -> int:
    """A size such as 16G, 512M, 1.5GB, 300MB or 4096 (bytes; k, M, G, T are powers of 1000)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if not m:
        raise ConfigError(f"--device-memory must be a size such as 16G, 512M or 300MB (got {text!r})")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2).lower()]
    if value < 1:
        raise ConfigError(f"--device-memory must be positive (got {text!r})")
    return int(value)


def device_memory(devices, given: int | None = None) -> tuple[int, str] | None:
    """(bytes, where that figure comes from) a device may hold for a group: the limit the user gave, else
    the smallest that JAX's allocator reports for `devices`; None where neither is known (a CPU device,
    whose memory is the host's)."""
    if given is not None:
        return given, "--device-memory"
    limits = []
    for d in (d for d in devices if d.process_index == jax.process_index()):  # others' are not ours to ask
        try:
            stats = d.memory_stats()
        except Exception:  # backends without memory statistics
            stats = None
        if stats and stats.get("bytes_limit"):
            limits.append(int(stats["bytes_limit"]))
    return (min(limits), f"{devices[0].device_kind}'s memory for JAX") if limits else None


def check_fits(group: Group, estimate: MemoryEstimate, limit: tuple[int, str] | None, devices: int) -> None:
    """Refuse a group whose runs need more memory than a device has, saying what to change."""
    if limit is None or estimate.total <= limit[0]:
        return
    runs = len(group.configs) * len(group.seeds)
    changes = [f"fewer seeds per device (now {runs // devices} run(s) on each of {devices} device(s))", "more devices"]
    if estimate.replay:
        changes.append(
            f"smaller replay buffers ({human_bytes(estimate.replay)} per device now; `pgjax config {group.agent}` "
            "lists the fields that size them)"
        )
    raise ConfigError(
        f"{group.agent} on {group.env} needs {estimate.describe()}, more than a device's "
        f"{human_bytes(limit[0])} ({limit[1]}); use {', '.join(changes[:-1])} or {changes[-1]}"
    )


def check_group_fits(group: Group, given: int | None = None, checkpoints: bool = False, devices=None) -> None:
    """Before anything compiles: refuse a group whose run states (and a checkpoint's copy of them) exceed
    a device's memory (known for accelerators, or given). Builds and traces the group's initialisation
    only when there is a limit."""
    mesh = runs_mesh(len(group.configs), len(group.seeds), devices)
    limit = device_memory(list(mesh.devices.flat), given)
    if limit is None:
        return
    trainer, keys, configs, mesh = prepare(group, devices)
    check_fits(
        group,
        run_state_memory(run_shape_of(trainer, keys, configs), mesh.size, checkpoints=checkpoints),
        limit,
        mesh.size,
    )
