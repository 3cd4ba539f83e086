"""One sweep over many devices and hosts with JAX's own distributed runtime.

Every process runs the same sweep: the same groups, compiled for the same global mesh of all processes'
devices, each process computing the runs on its own devices. Runs never communicate; the processes meet
at barriers and to all-gather each evaluation point's returns (and a finished group's policies), and
process 0 alone writes curves, metrics, runs.json, policies and reports. Checkpoints go through orbax,
each process writing its own shards into a folder process 0 creates and finalises, so any sweep that
checkpoints needs its results folder on a filesystem every host sees.
"""

from __future__ import annotations

import itertools
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from pgjax.config import ConfigError

# Cluster environments in which jax.distributed.initialize() finds every setting itself: the CLI starts
# the runtime there without being asked (a single-task job is left alone).
# SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: only `srun` starts the tasks of a step; a batch script or an
# salloc shell with several tasks allocated still runs pgjax once.
CLUSTER_SIZE_VARIABLES = ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE")


def launched_by_cluster() -> bool:
    sizes = [os.environ.get(name) for name in CLUSTER_SIZE_VARIABLES]
    return any(s and s.isdigit() and int(s) > 1 for s in sizes) or "JAX_COORDINATOR_ADDRESS" in os.environ


def start(coordinator: str | None, num_processes: int | None, process_id: int | None, detect: bool) -> None:
    """jax.distributed.initialize with the given settings, or with what the cluster sets (SLURM, Open MPI,
    Cloud TPU, JAX_COORDINATOR_ADDRESS) when `detect` or when a multi-task job launched us."""
    explicit = [coordinator, num_processes, process_id]
    if any(v is not None for v in explicit) and None in explicit:
        raise ConfigError(
            "--coordinator, --num-processes and --process-id go together (or give none and let "
            "--distributed detect them from SLURM, Open MPI or a Cloud TPU)"
        )
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes must be >= 1 (got {num_processes})")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in 0..{num_processes - 1} (got {process_id})")
    if coordinator is not None and ":" not in coordinator:
        raise ConfigError(f"--coordinator must be HOST:PORT (got {coordinator!r})")
    if coordinator is None and not (detect or launched_by_cluster()):
        return
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot start JAX's distributed runtime: {str(e).splitlines()[0]}") from None


def is_writer() -> bool:
    """Process 0 writes the results; the others compute their share and write nothing but checkpoint shards."""
    return jax.process_index() == 0


def multi_process() -> bool:
    return jax.process_count() > 1


def to_global(tree, sharding):
    """Host values every process holds alike, laid out on a (possibly multi-process) sharding."""
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda index: np.asarray(x)[index]), tree
    )


def to_host(tree):
    """Every process's copy of the whole tree in numpy: a gather across processes where the arrays span
    several (every process must call it), a plain device-to-host copy otherwise."""
    if not multi_process():
        return jax.device_get(tree)
    jax.block_until_ready(tree)
    barrier("gather")  # gloo gave up on a peer ~30 s late here (at its first collective); a barrier waits
    return multihost_utils.process_allgather(tree, tiled=True)


def same_as_writer(flag: bool) -> bool:
    """Process 0's value of a decision every process must take alike (every process must call it)."""
    if not multi_process():
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


MESSAGE_BYTES = 2048


def writer_message(message: str | None) -> str | None:
    """Process 0's message (None: it has none), handed to every process (every process must call it)."""
    if not multi_process():
        return message
    encoded = np.zeros(MESSAGE_BYTES, np.int32)
    text = (message or "").encode()[:MESSAGE_BYTES]
    encoded[: len(text)] = np.frombuffer(text, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(encoded)).astype(np.uint8)
    return bytes(received).rstrip(b"\0").decode(errors="replace") or None


_barriers = itertools.count()
BARRIER_TIMEOUT_S = 24 * 3600  # a process may be a long chunk or compile behind the others


def barrier(name: str) -> None:
    """Every process waits here for the others (nothing to wait for with one): a barrier of the
    coordination service, with no device collective, so a process that is minutes behind is waited for."""
    if multi_process():
        from orbax.checkpoint import multihost

        multihost.get_barrier_sync_fn()(key=f"pgjax-{next(_barriers)}-{name}", timeout_ms=BARRIER_TIMEOUT_S * 1000)
