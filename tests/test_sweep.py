"""Sweeps: grids over float hyperparameters share one compiled program; NaN runs are marked diverged
and the sweep goes on; results and the report are written."""

import csv
import json

from helpers import tiny_sweep

from pgjax import cli
from pgjax.sweep import load_sweep

# exp(1000) = inf: the second config diverges
SWEEP = tiny_sweep("t", 192, 60, num_evals=2, ppo_grid="grid = { init_log_std = [0.0, 1000.0] }")


def test_float_grid_is_one_group_static_grid_is_two(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        "[[run]]\nagent='ppo'\nenv='gymnax/Pendulum-v1'\nsteps=10000\n"
        "grid = { lr = [1e-4, 3e-4, 1e-3], num_epochs = [4, 10] }\n"
    )
    name, groups = load_sweep(path)
    assert name == "s" and len(groups) == 2
    assert [len(g.configs) for g in groups] == [3, 3]


def test_sweep_writes_curves_runs_and_report_and_marks_divergence(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--out", str(out), "--quiet", "--tensorboard", str(tmp_path / "tb")]) == 0
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert set(rows[0]) >= {
        "agent",
        "env",
        "backend",
        "config_id",
        "seed",
        "env_steps",
        "wall_time_s",
        "eval_return_mean",
        "eval_return_std",
        "train_return_mean",
        "status",
    }
    runs = json.loads((out / "runs.json").read_text())
    ppo = runs["groups"][0]
    good, bad = ppo["config_ids"]
    final = {(r["config_id"], r["seed"]): r["status"] for r in rows if r["agent"] == "ppo"}
    assert final[(good, "0")] == "ok" and final[(bad, "0")] == "diverged" and final[(bad, "1")] == "diverged"
    assert ppo["diverged_runs"] == 2
    assert any(r["agent"] == "sac" and r["status"] == "ok" for r in rows)  # the sweep went on
    for key in ("python", "jax", "jaxlib", "flax", "optax", "brax", "gymnax", "pgjax"):
        assert key in runs["versions"]
    assert runs["device"]["kind"] and runs["device"]["count"] >= 1 and ppo["matmul_precision"] == "highest"
    assert runs["git_commit"] and ppo["compile_s"] > 0 and ppo["run_s"] > 0 and ppo["steps_per_s"] > 0
    memory = ppo["memory_per_device"]  # PPO keeps no replay; its programs need scratch space
    assert memory["replay_bytes"] == 0 and memory["temporaries_bytes"] > 0
    assert memory["checkpoint_copy_bytes"] == memory["run_state_bytes"]  # a sweep checkpoints its groups
    assert memory["total_bytes"] == 2 * memory["run_state_bytes"] + memory["temporaries_bytes"]
    assert runs["configs"][good]["config"]["init_log_std"] == 0.0
    assert ppo["env_details"] == {"episode_length": 200}  # what fixes the env's dynamics, with each group
    report = (out / "report.md").read_text()
    assert "| ppo | gymnax/Pendulum-v1 |" in report and "IQM" in report
    assert "| init_log_std=1000 |" in report  # configs are told apart by the field that differs
    assert (out / "curves_gymnax_Pendulum-v1.png").stat().st_size > 1000
    # the agents' training metrics, one row per run, metric and evaluation point after the first
    metrics = list(csv.DictReader(open(out / "metrics.csv")))
    sac_alpha = [m for m in metrics if m["agent"] == "sac" and m["metric"] == "alpha" and m["seed"] == "0"]
    sac_steps = sorted({int(r["env_steps"]) for r in rows if r["agent"] == "sac"})
    assert [int(m["env_steps"]) for m in sac_alpha] == sac_steps[1:]
    assert all(0 < float(m["value"]) <= 1.0 for m in sac_alpha)  # α starts at 1 and is averaged per chunk
    assert {"policy_loss", "value_loss", "approx_kl"} <= {m["metric"] for m in metrics if m["agent"] == "ppo"}
    assert "## Training metrics" in report and "(metrics_gymnax_Pendulum-v1.png)" in report
    assert (out / "metrics_gymnax_Pendulum-v1.png").stat().st_size > 1000
    assert not list(out.glob("*.tmp"))
    # the TensorBoard stream holds the same points as the CSVs
    scalars = tensorboard_scalars(tmp_path / "tb" / good / "seed_0")
    curve = [
        (int(r["env_steps"]), float(r["eval_return_mean"])) for r in rows if r["config_id"] == good and r["seed"] == "0"
    ]
    assert [(s, round(v, 2)) for s, v in scalars["curve/eval_return_mean"]] == [(s, round(v, 2)) for s, v in curve]
    assert len(scalars["train/approx_kl"]) == len(curve) - 1


def tensorboard_scalars(folder) -> dict:
    """{tag: [(step, value)]} read from the event files' TFRecords with tensorboardX's own Event proto."""
    import struct as bytes_struct

    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (length,) = bytes_struct.unpack("<Q", data[i : i + 8])
            event = Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_matmul_precision_is_set_for_the_compiled_runs_and_recorded(tmp_path):
    """float32 ("highest") by default, another when asked; the compiled program and runs.json agree."""
    from pgjax import driver
    from pgjax.envs import make
    from pgjax.groups import make_group
    from pgjax.layout import runs_mesh
    from pgjax.programs import compile_group
    from pgjax.registry import get_agent
    from pgjax.sweep import WriteOptions, run_groups

    overrides = [{"num_envs": 4, "rollout_length": 8, "num_epochs": 1, "num_minibatches": 2, "total_steps": 32}]
    for precision, hlo in (("highest", "operand_precision={highest,highest}"), ("default", None)):
        (group,) = make_group(
            "ppo",
            "gymnax/Pendulum-v1",
            None,
            [0],
            overrides,
            num_evals=1,
            eval_episodes=1,
            **({} if precision == "highest" else {"matmul_precision": precision}),
        )
        out = tmp_path / precision
        run_groups("p", [group], out, WriteOptions(progress=False))
        assert json.loads((out / "runs.json").read_text())["groups"][0]["matmul_precision"] == precision
        agent = get_agent("ppo")
        trainer = driver.Trainer(agent, make("gymnax/Pendulum-v1"), driver.make_schedule(agent, group.configs[0], 1), 1)
        fns = compile_group(
            trainer, driver.seed_keys([0]), driver.stack_configs(group.configs), runs_mesh(1, 1), group.matmul_precision
        )
        text = fns.advance.as_text()
        assert " dot(" in text
        assert (hlo in text) if hlo else ("highest" not in text)


def test_report_gives_budgets_of_different_scale_their_own_panels():
    from pgjax.report import budget_panels

    assert budget_panels([20_000, 1_000_000, 40_000, 200_000, 20_000]) == [0, 2, 0, 1, 0]
    assert budget_panels([300_000]) == [0]


def test_the_memory_estimate_is_the_run_states_bytes_and_programs_that_do_not_fit_are_refused_before_running(
    tmp_path, capsys
):
    import jax
    import numpy as np

    from pgjax import driver
    from pgjax.groups import make_group
    from pgjax.memory import run_state_memory
    from pgjax.programs import prepare, run_shape_of

    sac = ["--set", "warmup_steps=100", "--set", "hidden_sizes=[16, 16]"]
    (group,) = make_group(
        "sac",
        "gymnax/Pendulum-v1",
        None,
        [0, 1],
        [{"total_steps": 2000, "warmup_steps": 100, "hidden_sizes": (16, 16)}],
    )
    trainer, keys, configs, mesh = prepare(group)
    estimate = run_state_memory(run_shape_of(trainer, keys, configs), mesh.size)
    runs = jax.jit(driver.over_seeds_and_configs(trainer.init, False))(keys, configs)
    assert estimate.run_state * mesh.size == sum(np.asarray(x).nbytes for x in jax.tree.leaves(runs))
    assert estimate.replay * mesh.size == sum(np.asarray(x).nbytes for x in jax.tree.leaves(runs.agent_state.buffer))
    # enough for the run states and a checkpoint's copy, not for the compiled programs' scratch space as well
    out = tmp_path / "out"
    argv = [
        "run",
        "sac",
        "gymnax/Pendulum-v1",
        "--steps",
        "2000",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--device-memory",
        str(2 * estimate.run_state + 1),
        *sac,
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "compiled programs' scratch space" in err and "not counted yet" not in err and "more than a device's" in err
    assert list(csv.DictReader(open(out / "curves.csv"))) == []  # refused before its first evaluation point
