"""A group's compiled programs: its trainer, seed keys and stacked configs, and init, advance and evaluate
jitted over seeds x configs on the device grid and compiled ahead of time (compile time apart)."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from pgjax import distributed, driver
from pgjax.envs import make as make_env
from pgjax.groups import Group
from pgjax.layout import laid_out, runs_mesh
from pgjax.registry import get_agent


def prepare(group: Group, devices=None) -> tuple[driver.Trainer, jax.Array, Any, Mesh]:
    """What compile_group needs for a group: its trainer, seed keys, stacked configs and device mesh (over
    `devices`, by default all)."""
    agent = get_agent(group.agent)
    schedule = driver.make_schedule(agent, group.configs[0], group.num_evals)
    trainer = driver.Trainer(agent, make_env(group.env, group.backend), schedule, group.eval_episodes)
    return (
        trainer,
        driver.seed_keys(group.seeds),
        driver.stack_configs(group.configs),
        runs_mesh(len(group.configs), len(group.seeds), devices),
    )


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The ahead-of-time compiled pieces of a group's runs: no call can trigger a recompile."""

    init: Any  # (seed keys, configs) -> runs
    advance: Any  # (runs, configs) -> runs, one chunk of iterations; donates its input
    evaluate: Any  # (runs, configs) -> (runs, curve point); donates its input
    seconds: float
    run_shape: Any  # the runs' shapes, dtypes and shardings (what a checkpoint restores into)
    temporaries: int | None  # the programs' largest scratch space per device
    seed_sharding: NamedSharding
    config_sharding: NamedSharding
    shared_sharding: NamedSharding

    def inputs(self, keys, configs):
        """Seed keys and configs laid out as the programs take them (on every process's devices)."""
        return (distributed.to_global(keys, self.seed_sharding), distributed.to_global(configs, self.config_sharding))

    def iterations(self, n: int):
        return distributed.to_global(np.int32(n), self.shared_sharding)


def jitted_init(trainer: driver.Trainer, mesh: Mesh):
    """The runs' initialisation (seed keys, stacked configs) -> run states, laid out on `mesh`."""
    return jax.jit(
        driver.over_seeds_and_configs(trainer.init, False),
        in_shardings=(laid_out(mesh, "seeds"), laid_out(mesh, "configs")),
        out_shardings=laid_out(mesh, "configs", "seeds"),
    )


def run_shape_of(trainer: driver.Trainer, keys, configs):
    """The shapes and dtypes of a group's run states ([configs, seeds] leading axes), by tracing only."""
    return jax.eval_shape(driver.over_seeds_and_configs(trainer.init, False), keys, configs)


def group_programs(trainer: driver.Trainer, keys, configs, mesh: Mesh) -> dict[str, tuple[Any, tuple]]:
    """The group's three jitted programs, each with the (abstract) arguments it is compiled for:
    init (seed keys, configs) -> runs; advance (runs, configs, iterations) -> runs, one chunk, donating its
    input; evaluate (runs, configs) -> (runs, curve point), donating its input (replay buffers are updated in
    place)."""
    runs, per_config, shared = laid_out(mesh, "configs", "seeds"), laid_out(mesh, "configs"), laid_out(mesh)
    init = jitted_init(trainer, mesh)
    advance = jax.jit(
        driver.over_seeds_and_configs(trainer.advance, True),
        in_shardings=(runs, per_config, shared),
        out_shardings=runs,
        donate_argnums=0,
    )
    evaluate = jax.jit(
        driver.over_seeds_and_configs(trainer.evaluate, True),
        in_shardings=(runs, per_config),
        out_shardings=runs,
        donate_argnums=0,
    )
    run_shape = run_shape_of(trainer, keys, configs)
    iterations = jax.ShapeDtypeStruct((), jnp.int32)
    return {
        "init": (init, (keys, configs)),
        "advance": (advance, (run_shape, configs, iterations)),
        "evaluate": (evaluate, (run_shape, configs)),
    }


def compiled_temporaries(programs) -> int | None:
    """The largest temporary allocation of the compiled programs, per device (None where XLA says nothing)."""
    sizes = []
    for program in programs:
        analysis = program.memory_analysis()
        if analysis is not None:
            sizes.append(int(analysis.temp_size_in_bytes))
    return max(sizes) if sizes else None


def compile_group(trainer: driver.Trainer, keys, configs, mesh: Mesh, matmul_precision: str) -> Compiled:
    """Compile init, advance and evaluate for the runs laid out on `mesh` with the chosen float32 matmul
    precision, timing compilation apart."""
    t0 = time.perf_counter()
    # XLA compiles outside the GIL: each program compiles on a thread of its own while the next one is
    # traced and lowered (Python, one core), and the compiles overlap each other
    with jax.default_matmul_precision(matmul_precision), ThreadPoolExecutor(3) as pool:
        programs = group_programs(trainer, keys, configs, mesh)
        pending = [pool.submit(fn.lower(*args).compile) for fn, args in programs.values()]
        compiled = tuple(p.result() for p in pending)
    seconds = time.perf_counter() - t0
    runs = laid_out(mesh, "configs", "seeds")
    run_shape = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runs), programs["evaluate"][1][0]
    )
    return Compiled(
        *compiled,
        seconds,
        run_shape,
        compiled_temporaries(compiled),
        laid_out(mesh, "seeds"),
        laid_out(mesh, "configs"),
        laid_out(mesh),
    )
