"""Checkpoints of a group's whole run state with orbax-checkpoint.

The run state (every seed × config's agent state: parameters, optimiser states, replay buffers,
normalisers, env states, keys, evaluation counters, divergence flags) is saved after an evaluation
point, asynchronously, keeping the last two. Step n is the state after n chunks. orbax finalises a
checkpoint by renaming it into place, so one cut short by a kill is never listed; one damaged on disk
afterwards fails to restore and the previous one is used, with a warning.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from pgjax import distributed
from pgjax.config import ConfigError
from pgjax.results import WriteFailed, writing

# orbax and tensorstore report a failed write (a full disk) in several exception types, and an
# asynchronous save's failure only at the next save or at close: each of those is a failed write
ORBAX_FAILURES = (Exception,)

KEEP = 2
# By default a group's state is saved at the first evaluation point a minute or more after the previous
# save: a killed run loses at most about a minute plus a chunk, and a sweep of 20 points a few
# minutes long pays a handful of saves rather than 20 (each copies the state to the host and writes it).
DEFAULT_SECONDS = 60.0


@jax.jit
def detached_copy(tree):
    """A copy on the same devices and shardings: the runner donates the run state's buffers to the next
    chunk while orbax is still writing, so the writer must own its own (on every process, for the shards
    that process holds)."""
    return jax.tree.map(jnp.copy, tree)


def without_empty_arrays(tree):
    """orbax cannot store a zero-size array (MJX's `data.act` of a model without actuator state is one):
    None in its place. A tree without any is stored exactly as before."""
    return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def with_empty_arrays(restored, abstract):
    """`restored` with each None that stood for a zero-size array of `abstract` made again, laid out as there."""

    def fill(want, got):
        if got is not None:
            return got
        return jax.jit(lambda: jnp.zeros(want.shape, want.dtype), out_shardings=want.sharding)()

    return jax.tree.map(fill, abstract, restored)


def check_layout(tree, abstract) -> None:
    """orbax restores the shapes it stored whatever the target says: a state written by code whose
    shapes differ must not pass for this code's."""
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(abstract)):
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"stored {got.dtype}{list(got.shape)} where this code has {want.dtype}{list(want.shape)}")


class GroupCheckpoints:
    def __init__(self, directory: Path, every: int | None = None):
        """Save every `every` evaluation points, or (None) a minute or more after the previous save."""
        self.directory = Path(directory).absolute()
        self.every = every
        self.last_wall_s = 0.0
        self.saves = 0
        self.closed = False
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=KEEP, enable_async_checkpointing=True, create=True),
        )

    def due(self, chunks_done: int, wall_s: float) -> bool:
        if self.every is None:
            return wall_s - self.last_wall_s >= DEFAULT_SECONDS
        return chunks_done % self.every == 0

    def save(self, chunks_done: int, run, meta: dict) -> None:
        self.last_wall_s = meta["wall_s"]
        self.saves += 1
        copy = without_empty_arrays(detached_copy(run))  # a device's failure is not a write's
        with writing(self.directory, ORBAX_FAILURES):
            self.manager.save(
                chunks_done, args=ocp.args.Composite(state=ocp.args.StandardSave(copy), meta=ocp.args.JsonSave(meta))
            )

    def restore_latest(self, abstract_run) -> tuple[int, object, dict] | None:
        """(chunks done, run state laid out as `abstract_run`, meta) of the newest checkpoint that reads
        back whole, or None when there is none. One that does not is moved aside to damaged-<step>
        (kept for inspection; the step can be saved again); when checkpoints exist and none reads back,
        the group is not silently started over: that is an error."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        failures = []
        for step in steps:
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(without_empty_arrays(abstract_run)), meta=ocp.args.JsonRestore()
                    ),
                )
                state = with_empty_arrays(restored.state, abstract_run)
                check_layout(state, abstract_run)
            except Exception as e:  # orbax/tensorstore raise many kinds for a damaged file
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                warnings.warn(
                    f"checkpoint {self.directory / str(step)} cannot be read ({reason}); moved to "
                    f"damaged-{step}, trying an earlier one",
                    stacklevel=2,
                )
                if distributed.is_writer():  # every process meets the same damage; one moves it
                    (self.directory / str(step)).rename(self.directory / f"damaged-{step}-{len(failures)}")
                self.manager.reload()
                failures.append(reason)
                continue
            self.last_wall_s = restored.meta["wall_s"]
            return step, state, dict(restored.meta)
        if failures:
            raise ConfigError(
                f"no checkpoint in {self.directory} could be restored (the newest: {failures[0]}); "
                "if the code changed since they were written, resume with that version, or start "
                "over with --overwrite"
            )
        return None

    def close(self, quiet: bool = False) -> None:
        """Wait for the last save and close; `quiet` (when another error is already on its way out): a
        failed save is not reported over it."""
        if self.closed:
            return
        self.closed = True
        try:
            with writing(self.directory, ORBAX_FAILURES):
                try:
                    self.manager.wait_until_finished()
                finally:
                    self.manager.close()
        except WriteFailed:
            if not quiet:
                raise

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def this_process_alone() -> ocp.StandardCheckpointer:
    """A checkpointer that waits for no other process: policies are gathered and written by process 0."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    )


def save_policies(directory: Path, final, best) -> None:
    """The policy states (Agent.policy_state) of a finished group's runs, final and best-evaluated, with
    leading [configs, seeds] axes, as host (numpy) arrays. What is there already was left by an attempt
    that stopped before the group was marked finished, so it is replaced."""
    shutil.rmtree(directory, ignore_errors=True)
    with writing(directory, ORBAX_FAILURES), this_process_alone() as checkpointer:
        checkpointer.save(Path(directory).absolute(), {"final": final, "best": best})


def restore_policies(directory: Path, shape) -> dict:
    """{"final": ..., "best": ...} laid out as `shape` (one run's policy part with [configs, seeds] axes)."""
    with this_process_alone() as checkpointer:
        return checkpointer.restore(Path(directory).absolute(), {"final": shape, "best": shape})
