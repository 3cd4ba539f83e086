"""The suite's stored random-policy scores come back from the command beside them, and bench figures
are appended with what makes them comparable (date, commit, device, versions)."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from pgjax import bench, cli

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def stored_baselines(suite: str):
    """(env, stored value, the command's arguments) for each `random = X  # pgjax baseline ...` line."""
    text = (SWEEPS / suite).read_text()
    found = re.findall(r'\[scores\."([^"]+)"\]\nrandom = (\S+)\s+# pgjax (baseline .+)', text)
    assert len(found) == len(tomllib.loads(text)["scores"])  # every task says how its value was measured
    return found


@pytest.mark.parametrize("suite", ["suite_cpu.toml", "suite_gpu.toml"])
def test_every_suite_task_says_how_its_random_score_was_measured(suite):
    assert all(f"baseline {env} " in command for env, _, command in stored_baselines(suite))


@pytest.mark.parametrize(
    "env,stored,command", [b for b in stored_baselines("suite_cpu.toml") if b[0].startswith("gymnax/")]
)
def test_suite_random_scores_are_what_their_baseline_command_prints(capsys, env, stored, command):
    assert cli.main(["--compile-cache", "off", *command.split()]) == 0
    printed = tomllib.loads(capsys.readouterr().out.split("\n", 1)[1])["scores"][env]["random"]
    assert printed == float(stored)


def test_baseline_refuses_too_few_episodes(capsys):
    assert cli.main(["baseline", "gymnax/Pendulum-v1", "--episodes", "1"]) == 2
    assert "--episodes must be >= 2" in capsys.readouterr().err


def test_bench_critic_layer_norm_times_both_critics_alone_and_vmapped(capsys):
    assert cli.main(["bench", "--critic-layer-norm", "--seeds", "2", "--record", "off"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["layer_norm"] for r in rows] == [False, True]
    assert all(r["one_seed_ms"] > 0 and r["one_seed_vmapped_ms"] > 0 and r["2_seeds_vmapped_ms"] > 0 for r in rows)


def test_bench_appends_its_figures_with_commit_device_and_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "bench_one", lambda agent, *a: {"agent": agent, "run_s": 1.5})
    monkeypatch.setattr(bench, "fresh_compile_cache", lambda: __import__("contextlib").nullcontext())
    for _ in range(2):
        assert cli.main(["bench", "--only", "sac", "--record", str(tmp_path)]) == 0
    (path,) = tmp_path.iterdir()
    assert path.name == bench.record_file(tmp_path).name
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2 and all(r["agent"] == "sac" and r["run_s"] == 1.5 for r in rows)
    assert {"date", "commit", "machine", "versions"} <= set(rows[0])
    assert rows[0]["machine"]["platform"] == "cpu" and rows[0]["versions"]["jax"]
