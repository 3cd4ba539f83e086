"""One sweep over several processes (jax.distributed, the real coordinator on this host): the same curves
as one process with the same devices and as one device alone; only process 0 writes; `import pgjax`
leaves JAX's devices alone."""
import csv
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pgjax.config import ConfigError
from pgjax.runner import runs_mesh

SWEEP = """
name = "distributed"
seeds = 2
num_evals = 3
eval_episodes = 2
[[run]]
agent = "ppo"
env = "gymnax/Pendulum-v1"
steps = 6144
config = { num_envs = 8, rollout_length = 16, num_epochs = 2, num_minibatches = 2 }
[[run]]
agent = "sac"
env = "gymnax/Pendulum-v1"
steps = 600
config = { num_envs = 2, batch_size = 16, warmup_steps = 20, hidden_sizes = [16, 16] }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def sweep_command(sweep: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "pgjax", "--compile-cache", "off", "sweep", str(sweep), "--out", str(out),
            "--quiet", "--no-report", *options]


def curves(out: Path) -> list[tuple]:
    """Every row but its wall time."""
    with open(out / "curves.csv", newline="") as f:
        return sorted(tuple(v for k, v in row.items() if k != "wall_time_s") for row in csv.DictReader(f))


def numbers(rows: list[tuple]) -> np.ndarray:
    """The mean returns of each row (evaluation, training)."""
    return np.array([[float(r[6]), float(r[8])] for r in rows])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The sweep on two processes with one CPU device each, each told a results folder of its own."""
    tmp = tmp_path_factory.mktemp("distributed")
    sweep = tmp / "sweep.toml"
    sweep.write_text(SWEEP)
    address = f"localhost:{free_port()}"
    procs = [subprocess.Popen(sweep_command(sweep, tmp / f"out{i}", "--cpu-devices", "1", "--coordinator", address,
                                            "--num-processes", "2", "--process-id", str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return sweep, tmp


def test_two_processes_give_the_curves_of_one_process_with_two_devices_and_of_one_device(two_processes):
    """Bit for bit where each device computes the same share (one seed); against one device holding both
    seeds, XLA compiles the batch of two differently and rounds differently (README: what reproduces bit
    for bit), so there the curves agree exactly at the start and to rounding drift after."""
    sweep, tmp = two_processes
    distributed = curves(tmp / "out0")
    assert len(distributed) == 2 * 2 * 4  # 2 groups x 2 seeds x 4 evaluation points
    alone = {}
    for devices in ("2", "1"):
        out = tmp / f"one-process-{devices}"
        done = subprocess.run(sweep_command(sweep, out, "--cpu-devices", devices), capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        alone[devices] = curves(out)
    assert alone["2"] == distributed
    assert [r[:6] for r in alone["1"]] == [r[:6] for r in distributed]  # the same runs and points
    assert [r for r in alone["1"] if r[5] == "0"] == [r for r in distributed if r[5] == "0"]
    np.testing.assert_allclose(numbers(alone["1"]), numbers(distributed), rtol=1e-3)


def test_only_process_0_writes_results(two_processes):
    _, tmp = two_processes
    assert {p.name for p in (tmp / "out0").iterdir()} >= {"curves.csv", "metrics.csv", "runs.json", "policies"}
    assert not (tmp / "out1").exists()


def test_an_uneven_split_over_processes_is_refused_before_compiling(monkeypatch):
    devices = jax.devices()[:2]
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ConfigError, match="3 seed\\(s\\) cannot be split evenly over the 2 devices of 2 processes"):
        runs_mesh(1, 3, devices)
    assert runs_mesh(2, 3, devices).devices.shape == (2, 1)  # configs take the split the seeds cannot


@pytest.mark.parametrize("env", [{}, {"JAX_NUM_CPU_DEVICES": "3"}])
def test_import_pgjax_leaves_jax_devices_as_jax_has_them(env):
    import os

    def devices(code):
        run = subprocess.run([sys.executable, "-c", code + "; import jax; print(len(jax.devices()))"],
                             capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    alone = devices("pass")
    assert devices("import pgjax, pgjax.api, pgjax.runner, pgjax.sweep") == alone == int(env.get("JAX_NUM_CPU_DEVICES", 1))
