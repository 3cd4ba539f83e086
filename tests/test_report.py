"""The report of a fixture results folder: per-task table, aggregate table (rliable) and plots, with
agents named (never by config hash) in every legend."""

import json
import re
import shutil

import matplotlib
import numpy as np
import pytest
from results_fixture import SCORES, fixture_folder, shift_returns

from pgjax import aggregate
from pgjax.report import write_report

matplotlib.use("Agg")


def test_report_has_per_task_and_aggregate_tables_and_plots_named_by_agent(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    finals = fixture_folder(tmp_path / "r", seeds=6)
    monkeypatch.setattr(plt, "close", lambda *a: None)  # keep the figures to read their legends
    plt.close("all")
    report = write_report([tmp_path / "r"], tmp_path / "r").read_text()
    assert "| ppo | gymnax/Pendulum-v1 |" in report and "## Aggregate over tasks" in report
    assert "Fewer than" not in report
    data = json.loads((tmp_path / "r" / "aggregate.json").read_text())
    assert set(data["estimates"]) == {"ppo", "sac"}
    tasks = sorted(SCORES)
    expected = aggregate.iqm_and_optimality_gap(
        aggregate.score_matrices(
            {a: {t: np.array(v) for t, v in per.items()} for a, per in finals.items()}, SCORES, tasks
        )
    )
    for agent in ("ppo", "sac"):
        assert data["estimates"][agent]["IQM"] == pytest.approx(list(expected[agent]["IQM"]), abs=1e-6)
        assert re.search(rf"\| {agent} \| 6 \| {expected[agent]['IQM'][0]:.3f} \|", report)
    assert set(data["probability_of_improvement"]) == {"ppo > sac", "sac > ppo"}
    for name in (
        "aggregate.png",
        "performance_profiles.png",
        "probability_of_improvement.png",
        "curves_gymnax_Pendulum-v1.png",
    ):
        assert (tmp_path / "r" / name).stat().st_size > 1000 and f"({name})" in report
    legends = [
        t.get_text()
        for n in plt.get_fignums()
        for ax in plt.figure(n).axes
        if ax.get_legend()
        for t in ax.get_legend().get_texts()
    ]
    legends += [t.get_text() for n in plt.get_fignums() for ax in plt.figure(n).axes for t in ax.get_yticklabels()]
    assert any(t.startswith("ppo") for t in legends) and any(t.startswith("sac") for t in legends)
    assert not [t for t in legends if re.search(r"-[0-9a-f]{8}", t)]  # no config hashes
    plt.close("all")


def test_report_says_when_intervals_rest_on_fewer_than_5_seeds(tmp_path):
    fixture_folder(tmp_path / "r", seeds=3)
    report = write_report([tmp_path / "r"], tmp_path / "r").read_text()
    assert "**Fewer than 5 runs per task** for ppo, sac" in report


def test_report_of_two_folders_compares_them_run_by_run(tmp_path):
    fixture_folder(tmp_path / "a", seeds=6)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shift_returns(tmp_path / "b", "sac", "gymnax/Pendulum-v1", 50.0)
    runs = json.loads((tmp_path / "b" / "runs.json").read_text())
    runs["scores"]["brax/inverted_pendulum"]["reference"] = 900.0
    (tmp_path / "b" / "runs.json").write_text(json.dumps(runs))
    report = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp").read_text()
    against = report.split("## Against a")[1].split("\n## ")[0]
    rows = {
        tuple(c.strip() for c in line.split("|")[1:3]): line
        for line in against.splitlines()
        if line.startswith("| ppo") or line.startswith("| sac")
    }
    assert len(rows) == 4
    assert "| yes |" in rows[("ppo", "gymnax/Pendulum-v1")] and "| yes |" in rows[("sac", "brax/inverted_pendulum")]
    assert "| no |" in rows[("sac", "gymnax/Pendulum-v1")] and "| +50.0 ± " in rows[("sac", "gymnax/Pendulum-v1")]
    assert "| +0.0 ± " in rows[("ppo", "brax/inverted_pendulum")]
    data = json.loads((tmp_path / "cmp" / "aggregate.json").read_text())
    assert set(data["estimates"]) == {"ppo [a]", "ppo [b]", "sac [a]", "sac [b]"}
    assert data["scores"]["brax/inverted_pendulum"]["reference"] == 1000.0  # the first folder's
    assert "normalises brax/inverted_pendulum with random 30 and reference 900" in report
