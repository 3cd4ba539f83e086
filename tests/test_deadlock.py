"""jaxlib 0.10's XLA:CPU deadlocked on a batched LAPACK QR (the orthogonal initializer vmapped over
seeds) sharded over two CPU devices. The fix runs the decomposition unbatched; these programs run in
a subprocess with a timeout, so a regression fails instead of hanging CI."""

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent("""
    import os
    os.environ["JAX_NUM_CPU_DEVICES"] = "2"
    import pgjax, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from pgjax.networks import orthogonal
    assert len(jax.devices()) == 2

    # the minimal program: six vmapped QR-based initialisations of 64 x k matrices, 8 keys, 2 devices
    def six(key):
        return [orthogonal(1.0)(k, (64, n)) for k, n in zip(jax.random.split(key, 6), [3, 64, 64, 1, 64, 2])]
    sharded = NamedSharding(Mesh(np.array(jax.devices()), ("seeds",)), PartitionSpec("seeds"))
    init = jax.jit(jax.vmap(six), in_shardings=sharded)
    for i in range(5):
        jax.block_until_ready(init(jax.random.split(jax.random.PRNGKey(i), 8)))

    # a vmapped init of every agent over 8 seeds, laid out on both devices as the runner does
    from pgjax import driver
    from pgjax.registry import AGENT_NAMES
    from pgjax.groups import make_group
    from pgjax.layout import runs_mesh
    from pgjax.programs import jitted_init
    from pgjax.envs import make
    from pgjax.registry import get_agent
    for name in AGENT_NAMES:
        (group,) = make_group(name, "gymnax/Pendulum-v1", None, list(range(8)), [{"total_steps": 50_000}])
        agent = get_agent(name)
        schedule = driver.make_schedule(agent, group.configs[0], group.num_evals)
        trainer = driver.Trainer(agent, make("gymnax/Pendulum-v1"), schedule, group.eval_episodes)
        keys, configs = driver.seed_keys(group.seeds), driver.stack_configs(group.configs)
        mesh = runs_mesh(1, 8)
        assert mesh.size == 2
        init = jitted_init(trainer, mesh)  # as the runner lays it out; training itself never hung
        for _ in range(3):
            jax.block_until_ready(init(keys, configs))
    print("no deadlock")
""")


@pytest.mark.slow
def test_batched_orthogonal_init_and_every_agent_init_on_two_cpu_devices_do_not_hang():
    try:
        proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(
            "deadlock: the vmapped initialisation on two CPU devices did not finish in 900 s (it takes about a minute alone on a 2-core CPU)"
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no deadlock" in proc.stdout
