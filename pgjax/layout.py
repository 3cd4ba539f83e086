"""Where a group's runs go: the (configs, seeds) grid of devices, across processes too, and the shardings
that lay arrays out on it."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pgjax.config import ConfigError


def largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, at_most) + 1) if n % d == 0)


def runs_mesh(num_configs: int, num_seeds: int, devices=None) -> Mesh:
    """The devices a group runs on, as a (configs, seeds) grid: seeds are split evenly over as many
    devices as divide their number, then configs over what is left. Runs never communicate, so each
    device simply runs its share of the vmapped batch. Several processes (jax.distributed) share one
    global grid with the same number of devices from each (see split_over_processes)."""
    devices = jax.devices() if devices is None else devices
    if jax.process_count() > 1:
        processes = sorted({d.process_index for d in devices})
        local = {p: [d for d in devices if d.process_index == p] for p in processes}
        per_configs, per_seeds, per_process = split_over_processes(
            num_configs, num_seeds, len(processes), min(len(v) for v in local.values())
        )
        chosen = [d for p in processes for d in local[p][:per_process]]
    else:
        per_seeds = largest_divisor(num_seeds, len(devices))
        per_configs = largest_divisor(num_configs, len(devices) // per_seeds)
        chosen = devices[: per_configs * per_seeds]
    return Mesh(np.array(chosen).reshape(per_configs, per_seeds), ("configs", "seeds"))


def split_over_processes(num_configs: int, num_seeds: int, processes: int, local_devices: int) -> tuple[int, int, int]:
    """(configs split, seeds split, devices used per process) for the most devices that an even split
    allows with the same number from every process (each must hold a share); seeds are split first."""
    for per_process in range(local_devices, 0, -1):
        count = per_process * processes
        tilings = [
            (c, count // c)
            for c in range(1, count + 1)
            if count % c == 0 and num_configs % c == 0 and num_seeds % (count // c) == 0
        ]
        if tilings:
            per_configs, per_seeds = max(tilings, key=lambda t: t[1])
            return per_configs, per_seeds, per_process
    raise ConfigError(
        f"{num_configs} config(s) x {num_seeds} seed(s) cannot be split evenly over {processes} processes (each must "
        f"hold an equal share of the runs); use a multiple of {processes} seeds, or configs x seeds that {processes} "
        "processes can share evenly"
    )


def laid_out(mesh: Mesh, *axes: str) -> NamedSharding:
    """Arrays split over `mesh` along its named axes, one per leading array axis (none: replicated)."""
    return NamedSharding(mesh, PartitionSpec(*axes))
