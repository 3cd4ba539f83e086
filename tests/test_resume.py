"""Killed sweeps resume exactly; results are never overwritten by accident; checkpoints round-trip every
agent's whole state and a damaged one is passed over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_sweep

from pgjax.config import ConfigError
from pgjax.registry import AGENT_NAMES

PPO_ROWS = 2 * 9  # 2 seeds x 9 evaluation points


def sweep_file(tmp_path: Path, ppo_steps: int = 40_960) -> Path:
    path = tmp_path / "resume.toml"
    path.write_text(tiny_sweep("resume", ppo_steps, 1200, num_evals=8, ppo={"num_envs": 8, "rollout_length": 16}))
    return path


def pgjax_command(*args: str, cache: Path, every: str | None = "1", python: tuple[str, ...] = ("-m", "pgjax")):
    return [
        sys.executable,
        *python,
        "--compile-cache",
        str(cache),
        *args,
        "--quiet",
        "--no-report",
        *(["--checkpoint-every", every] if every else []),
    ]


def rows_written(out: Path) -> int:
    return (out / "curves.csv").read_text().count("\n") - 1 if (out / "curves.csv").is_file() else 0


def started_until_rows(command: list[str], out: Path, rows: int) -> subprocess.Popen:
    """The command started and left running once curves.csv in `out` holds `rows` rows or more."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while rows_written(out) < rows:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before curves.csv reached {rows} rows: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    return proc


def pgjax(*args: str, cache: Path, kill_at_rows: int | None = None, sig=signal.SIGKILL, every: str | None = "1"):
    """Run the CLI; with kill_at_rows, send `sig` once curves.csv holds that many rows (it may hold a few
    more by then: the kill lands at whatever evaluation point it meets) and return (rows, stderr)."""
    command = pgjax_command(*args, cache=cache, every=every)
    if kill_at_rows is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=900)
    out = Path(args[args.index("--out") + 1])
    proc = started_until_rows(command, out, kill_at_rows)
    os.kill(proc.pid, sig)
    return rows_written(out), proc.communicate(timeout=300)[1]


def results_files(folder: Path) -> dict[str, bytes]:
    """The folder's files and their contents, but the lock file (whose holder each command rewrites)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".pgjax-lock"}


def without_wall_time(path: Path) -> list[str]:
    """The file's lines with curves.csv's wall_time_s column (seconds of this machine's clock) removed."""
    lines = path.read_text().splitlines()
    if "wall_time_s" not in lines[0]:
        return lines
    col = lines[0].split(",").index("wall_time_s")
    return [",".join(f for i, f in enumerate(line.split(",")) if i != col) for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    cache = tmp / "cache"
    out = tmp / "whole"
    done = pgjax("sweep", str(sweep_file(tmp)), "--out", str(out), cache=cache)
    assert done.returncode == 0, done.stderr
    return tmp, cache, out


@pytest.mark.slow
def test_a_sweep_killed_twice_resumes_to_identical_curves_and_metrics(uninterrupted):
    tmp, cache, whole = uninterrupted
    sweep, out = str(sweep_file(tmp)), tmp / "killed"
    first, _ = pgjax("sweep", sweep, "--out", str(out), cache=cache, kill_at_rows=6)  # PPO, 3rd point or later
    assert first < PPO_ROWS - 4
    assert (out / ".pgjax-lock").read_text().startswith("pid ")  # held when it was killed; the resume takes it
    # the second kill lands in the second group, after the first finished: it is skipped on resume
    second, _ = pgjax("sweep", sweep, "--out", str(out), "--resume", cache=cache, kill_at_rows=PPO_ROWS + 4)
    assert second < PPO_ROWS + 2 * 13
    resumed = pgjax("sweep", sweep, "--out", str(out), "--resume", cache=cache, every=None)  # the default interval
    assert resumed.returncode == 0, resumed.stderr
    for name in ("curves.csv", "metrics.csv"):
        assert without_wall_time(out / name) == without_wall_time(whole / name), name
    assert not (out / "checkpoints").exists()  # nothing left to resume once every group finished


def test_results_are_never_overwritten_or_resumed_by_another_sweep(uninterrupted):
    tmp, cache, whole = uninterrupted
    before = results_files(whole)
    refused = pgjax("sweep", str(sweep_file(tmp)), "--out", str(whole), cache=cache)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "--overwrite" in refused.stderr
    other = tmp / "other"
    other.mkdir()
    changed = pgjax("sweep", str(sweep_file(other, ppo_steps=20_480)), "--out", str(whole), "--resume", cache=cache)
    assert changed.returncode == 2
    assert "group 1.configs[0].total_steps: 40960 -> 20480" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1
    assert results_files(whole) == before


def test_an_interrupt_says_what_was_written_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C (a KeyboardInterrupt) at evaluation point 2 of the first group: the message is the truth."""
    from helpers import TINY

    from pgjax import cli
    from pgjax.sweep import FolderRecorder

    original = FolderRecorder.point

    def interrupt_at_point_2(self, chunks_done, *args):
        original(self, chunks_done, *args)
        if chunks_done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(FolderRecorder, "point", interrupt_at_point_2)
    tiny = {k: v for k, v in TINY["ppo"].items() if k != "total_steps"}
    out = tmp_path / "run"
    argv = [
        "run",
        "ppo",
        "gymnax/Pendulum-v1",
        "--steps",
        "192",
        "--num-evals",
        "3",
        "--quiet",
        "--out",
        str(out),
        "--checkpoint-every",
        "1",
        *[a for k, v in tiny.items() for a in ("--set", f"{k}={v}")],
    ]
    assert cli.main(argv) == 130
    message = capsys.readouterr().err
    assert "interrupted" in message and "0 group(s) finished" in message
    assert "stopped after evaluation point 2" in message and message.strip().endswith("--resume")
    rows = (out / "curves.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # header and points 0, 1 and 2 of the one seed


def random_like(tree, seed):
    """Every leaf filled with random values of its dtype, so a round trip that drops or mixes up a leaf
    cannot pass by comparing zeros with zeros (drawn by numpy: jax.random would compile once per shape)."""
    rng = np.random.default_rng(seed)

    def fill(x):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(rng.standard_normal(x.shape), x.dtype)
        if x.dtype == jnp.bool_:
            return jnp.asarray(rng.random(x.shape) < 0.5)
        return jnp.asarray(rng.integers(0, 1000, x.shape), x.dtype)

    return jax.tree.map(fill, tree)


@pytest.mark.parametrize(
    "agent,env",
    [(a, "gymnax/Pendulum-v1") for a in AGENT_NAMES] + [("ppo", "dmc/CartpoleBalance"), ("sac", "dmc/CartpoleBalance")],
)  # MJX: zero-size leaves
def test_checkpoint_round_trip_of_every_agents_whole_run_state(agent, env, tmp_path):
    from helpers import tiny_trainer

    from pgjax.checkpoint import GroupCheckpoints

    trainer, config = tiny_trainer(agent, env)
    shape = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), config)
    run = random_like(shape, 1)
    checkpoints = GroupCheckpoints(tmp_path, every=1)
    checkpoints.save(3, run, {"env_steps": 96, "wall_s": 1.5})
    checkpoints.close()
    step, restored, meta = GroupCheckpoints(tmp_path, every=1).restore_latest(shape)
    assert (step, meta) == (3, {"env_steps": 96, "wall_s": 1.5})
    assert jax.tree.structure(restored) == jax.tree.structure(run)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(run)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_damaged_checkpoint_is_passed_over_for_the_previous_one(tmp_path):
    from pgjax.checkpoint import GroupCheckpoints

    run = {"params": jnp.arange(1000.0), "step": jnp.array(7)}
    checkpoints = GroupCheckpoints(tmp_path, every=1)
    checkpoints.save(1, run, {"env_steps": 10, "wall_s": 1.0})
    checkpoints.save(2, jax.tree.map(lambda x: x + 1, run), {"env_steps": 20, "wall_s": 2.0})
    checkpoints.close()
    for f in (tmp_path / "2").rglob("*"):  # cut every data file of the newest checkpoint short
        if f.is_file() and f.stat().st_size > 64 and "metadata" not in f.name.lower():
            f.write_bytes(f.read_bytes()[:32])
    shape = jax.eval_shape(lambda: run)
    with pytest.warns(UserWarning, match="cannot be read"):
        step, restored, meta = GroupCheckpoints(tmp_path, every=1).restore_latest(shape)
    assert step == 1 and meta["env_steps"] == 10
    np.testing.assert_array_equal(restored["params"], np.arange(1000.0))
    # checkpoints that exist but none of which reads back: an error, never a silent start from scratch
    other = tmp_path / "other"
    checkpoints = GroupCheckpoints(other, every=1)
    checkpoints.save(1, run, {"env_steps": 10, "wall_s": 1.0})
    checkpoints.close()
    wrong_shape = jax.eval_shape(lambda: {"params": jnp.arange(10.0), "step": jnp.array(7)})
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no checkpoint .* could be restored"):
        GroupCheckpoints(other, every=1).restore_latest(wrong_shape)
    assert (other / "damaged-1-0").is_dir()  # kept for inspection


def test_load_acts_exactly_like_the_trained_policy_in_the_envs_units(tmp_path, monkeypatch):
    from helpers import TINY

    import pgjax

    tiny = {k: v for k, v in TINY["ppo"].items() if k != "total_steps"}
    runs = dict(seeds=[3, 5], steps=4 * 8 * 6, num_evals=3, eval_episodes=2, init_log_std=1.0, **tiny)
    trained = pgjax.train("ppo", "gymnax/Pendulum-v1", out=tmp_path / "run", **runs)
    assert trained.final_returns.shape == (2,)
    obs = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (256, 3))
    key = jax.random.PRNGKey(1)
    for best in (False, True):
        loaded = pgjax.load(tmp_path / "run", seed=5, best=best)
        in_memory = trained.policy(5, best=best)
        for deterministic in (True, False):  # both jitted: eager and jitted differ by float rounding
            a = jax.jit(lambda o, k: loaded(o, k, deterministic))(obs, key)
            np.testing.assert_array_equal(a, jax.jit(lambda o, k: in_memory(o, k, deterministic))(obs, key))
            assert a.shape == (256, 1) and bool(jnp.all((a >= -2.0) & (a <= 2.0)))  # Pendulum's torque range
    sampled = loaded(obs, key, deterministic=False)
    assert float(jnp.abs(sampled).max()) > 1.0  # in newtons-metres, not the agent's [-1, 1]
    with pytest.raises(Exception, match="seeds"):
        pgjax.load(tmp_path / "run", seed=4)

    # without `out` nothing is written (no results folder machinery at all), and the runs are the same
    def no_folder(*args, **kwargs):
        raise AssertionError("train without out wrote a results folder")

    import pgjax.sweep

    monkeypatch.setattr(pgjax.sweep, "run_groups", no_folder)
    monkeypatch.chdir(tmp_path / "run")
    before = sorted(p.name for p in Path.cwd().rglob("*"))
    unwritten = pgjax.train("ppo", "gymnax/Pendulum-v1", **runs)
    assert unwritten.out is None and sorted(p.name for p in Path.cwd().rglob("*")) == before
    drop_wall = [{k: v for k, v in r.items() if k != "wall_time_s"} for r in trained.curves]
    np.testing.assert_equal([{k: v for k, v in r.items() if k != "wall_time_s"} for r in unwritten.curves], drop_wall)
    np.testing.assert_equal(unwritten.metrics, trained.metrics)  # NaN (no training return yet) equals NaN


def test_a_sweep_extended_by_new_groups_resumes_and_a_shortened_one_does_not(uninterrupted, tmp_path):
    """Adding tasks to a suite's file continues its results (only the new groups run); dropping or
    changing a group that wrote them is refused."""
    import json
    import shutil

    from pgjax.results import ResultsFolder
    from pgjax.sweep import check_folder

    _, _, whole = uninterrupted
    folder = tmp_path / "copy"
    shutil.copytree(whole, folder, ignore=shutil.ignore_patterns("checkpoints", "policies"))
    plans = json.loads((folder / "runs.json").read_text())["plan"]
    extra = {**plans[1], "env": "brax/inverted_pendulum"}
    assert check_folder(ResultsFolder(folder), plans + [extra], "resume", "hint")["plan"] == plans
    with pytest.raises(ConfigError, match="number of groups: 2 -> 1"):
        check_folder(ResultsFolder(folder), plans[:1], "resume", "hint")
    with pytest.raises(ConfigError, match="group 2.env"):
        check_folder(ResultsFolder(folder), [plans[0], extra, plans[1]], "resume", "hint")


def test_a_row_cut_off_mid_line_is_left_out_by_report_and_removed_by_resume(uninterrupted, tmp_path):
    """A kill in the middle of an append leaves half a line: `pgjax report` reads the whole rows before it
    and a resume rewrites the file without it, so the rows appended next start on a line of their own."""
    from pgjax.report import load_metrics, load_runs
    from pgjax.results import ResultsFolder

    _, _, whole = uninterrupted
    cut, whole_rows = tmp_path / "cut" / "results", tmp_path / "whole_rows" / "results"  # one report label
    for folder in (cut, whole_rows):
        folder.mkdir(parents=True)
        (folder / "runs.json").write_bytes((whole / "runs.json").read_bytes())
    for name in ("curves.csv", "metrics.csv"):
        lines = (whole / name).read_text().splitlines(keepends=True)
        (whole_rows / name).write_text("".join(lines[:-1]))
        (cut / name).write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    assert load_runs([cut]) == load_runs([whole_rows])
    assert load_metrics([cut]) == load_metrics([whole_rows])

    results = ResultsFolder(cut)
    results.keep_rows(lambda row: True)
    for name in ("curves.csv", "metrics.csv"):
        assert (cut / name).read_text() == (whole_rows / name).read_text()


def test_a_second_command_on_a_folder_in_use_is_refused_and_the_first_finishes_every_row(uninterrupted, tmp_path):
    """One writer per results folder: while a sweep writes (here held stopped, mid-group), a resume, a new
    sweep and a run into its folder are each refused in one line that names it, before they compile or
    write; `pgjax report` still reads the folder; the first finishes with every row once."""
    tmp, cache, whole = uninterrupted
    sweep, out = str(sweep_file(tmp)), tmp_path / "busy"
    first = started_until_rows(pgjax_command("sweep", sweep, "--out", str(out), cache=cache), out, 6)
    os.kill(first.pid, signal.SIGSTOP)
    stopped = True
    try:
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        for second in (
            ["sweep", sweep, "--out", str(out), "--resume"],
            ["sweep", sweep, "--out", str(out)],
            ["run", "ppo", "gymnax/Pendulum-v1", "--steps", "8192", "--out", str(out), "--overwrite"],
        ):
            refused = pgjax(*second, cache=cache)
            assert refused.returncode == 2, refused.stderr
            (line,) = refused.stderr.strip().splitlines()
            assert f"{out} is in use by another pgjax command (pid {first.pid} on " in line, line
        report = subprocess.run(
            [sys.executable, "-m", "pgjax", "report", str(out), "--out", str(tmp_path / "report")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert report.returncode == 0, report.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
        stopped = False
    finally:
        if stopped:  # a failed check: the first is not left behind
            first.kill()
        os.kill(first.pid, signal.SIGCONT)
    err = first.communicate(timeout=600)[1]
    assert first.returncode == 0, err[-2000:]
    for name in ("curves.csv", "metrics.csv"):
        assert without_wall_time(out / name) == without_wall_time(whole / name), name


# The CLI with one write failing as on a full disk (ENOSPC): the nth append to curves.csv (half its first
# row written), the nth checkpoint save, the nth wait for orbax's background writes, the nth replacement
# of runs.json or the nth policy save.
FULL_DISK = """
import builtins, errno, os, runpy, sys
import orbax.checkpoint as ocp
import pgjax.results
where, nth = sys.argv[1], int(sys.argv[2])
count = [0]


def full_now(target):
    count[0] += target == where
    return target == where and count[0] == nth


def no_space():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class HalfWritten:
    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, text):
        self.file.write(text[: text.index("\\n") // 2])  # the disk fills in the middle of the first row
        self.file.flush()
        raise no_space()


def open_filling(path, mode="r", *args, **kwargs):
    file = builtins.open(path, mode, *args, **kwargs)
    return HalfWritten(file) if mode == "a" and full_now(os.path.basename(path)) else file


def failing(target, original, name_of=lambda *args: None):
    def call(*args, **kwargs):
        if full_now(name_of(*args) or target):
            raise no_space()
        return original(*args, **kwargs)
    return call


if where == "curves.csv":
    pgjax.results.open = open_filling
elif where == "runs.json":
    os.replace = failing(None, os.replace, lambda src, dst, *rest: os.path.basename(dst))
elif where == "checkpoint":
    ocp.CheckpointManager.save = failing(where, ocp.CheckpointManager.save)
elif where == "async checkpoint":  # an asynchronous save's failure, met when orbax is waited for
    ocp.CheckpointManager.wait_until_finished = failing(where, ocp.CheckpointManager.wait_until_finished)
else:
    ocp.StandardCheckpointer.save = failing(where, ocp.StandardCheckpointer.save)
sys.argv = ["pgjax", *sys.argv[3:]]
runpy.run_module("pgjax", run_name="__main__")
"""


@pytest.mark.slow
def test_a_full_disk_stops_in_one_line_keeps_what_was_written_and_resumes_bit_identically(uninterrupted, tmp_path):
    """Each kind of write fails once in turn, each run resuming the last; then, with space again, the
    resume gives the uninterrupted sweep's curves and metrics."""
    from pgjax.results import read_curves

    tmp, cache, whole = uninterrupted
    sweep, out = str(sweep_file(tmp)), tmp_path / "full"
    faults = [
        ("curves.csv", 5, "curves.csv"),  # PPO's 5th evaluation point, half a line written
        ("checkpoint", 3, "checkpoints"),  # the 3rd save after resuming from the 3rd point
        ("async checkpoint", 2, "checkpoints"),
        ("runs.json", 4, "runs.json"),
        ("policies", 1, "policies"),
    ]  # PPO finished, its policies not saved
    for i, (where, nth, named) in enumerate(faults):
        failed = subprocess.run(
            pgjax_command(
                "sweep",
                sweep,
                "--out",
                str(out),
                *(["--resume"] if i else []),
                cache=cache,
                python=("-c", FULL_DISK, where, str(nth)),
            ),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
        (line,) = [line for line in failed.stderr.splitlines() if line.startswith("pgjax:")]
        assert line.startswith(f"pgjax: error: cannot write {out}{os.sep}{named}") and "No space left on device" in line
        assert " free there)" in line and line.endswith("--resume"), line
        if where == "curves.csv":
            assert not (out / "curves.csv").read_text().endswith("\n")  # cut mid-line, as a full disk leaves it
            assert len(read_curves(out / "curves.csv")) == 2 * 4  # the rows of points 0-3, whole
    resumed = pgjax("sweep", sweep, "--out", str(out), "--resume", cache=cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("curves.csv", "metrics.csv"):
        assert without_wall_time(out / name) == without_wall_time(whole / name), name
