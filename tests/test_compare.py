"""`pgjax compare A B`: group by group, identical curves, the final-return difference B - A with its
bootstrap interval, the verdict, the exit code against the tolerance, and bad input refused in one line."""

import json
import shutil

import numpy as np
import pytest
from results_fixture import fixture_folder, shift_returns

from pgjax import aggregate, cli
from pgjax.compare import DIFFERS, IDENTICAL, NO_INTERVAL, SAME, compare_folders

SAC_PENDULUM = ("sac", "gymnax/Pendulum-v1")


@pytest.fixture
def two_folders(tmp_path):
    finals = fixture_folder(tmp_path / "a", seeds=6)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    return tmp_path / "a", tmp_path / "b", finals


def by_group(groups):
    return {(g.agent, g.env): g for g in groups}


def compare(capsys, *argv):
    code = cli.main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_copies_are_identical_and_pass(two_folders, capsys):
    a, b, _ = two_folders
    _, groups = compare_folders(a, b)
    assert len(groups) == 4 and all(g.verdict == IDENTICAL and g.parts_at is None for g in groups)
    assert all(g.difference == 0.0 for g in groups)
    code, out, _ = compare(capsys, a, b)
    assert code == 0 and out.count("| identical |") == 4
    assert "4 groups: 4 identical, 0 the same within the 95% interval, 0 differ" in out


def test_a_shifted_group_differs_by_the_shift_and_fails_beyond_the_tolerance(two_folders, capsys):
    a, b, finals = two_folders
    shift_returns(b, *SAC_PENDULUM, 50.0, at_steps=10000)
    groups = by_group(compare_folders(a, b)[1])
    g = groups[SAC_PENDULUM]
    assert g.difference == pytest.approx(50.0, abs=1e-3)  # B minus A, from the stored 6-digit returns
    assert g.first_mean == pytest.approx(np.mean(finals["sac"]["gymnax/Pendulum-v1"]), abs=1e-3)
    assert g.low <= 50.0 <= g.high and g.low > 0  # the whole interval moved, so it excludes zero
    point, low, high = aggregate.mean_difference(
        np.array(finals["sac"]["gymnax/Pendulum-v1"]) + 50.0, np.array(finals["sac"]["gymnax/Pendulum-v1"])
    )
    assert (g.low, g.high) == pytest.approx((low, high), abs=1e-2)
    assert g.verdict == DIFFERS and g.parts_at == 10000  # the earlier points are still identical
    assert [k for k, other in groups.items() if other.verdict != IDENTICAL] == [SAC_PENDULUM]
    code, out, _ = compare(capsys, a, b)
    assert code == 1 and "differs, beyond the tolerance |" in out and "1 differ, 0 parted" in out
    assert "(1 beyond the tolerance of 0)" in out
    assert compare(capsys, a, b, "--tolerance", "40")[0] == 1
    assert compare(capsys, a, b, "--tolerance", "60")[0] == 0
    assert compare(capsys, a, b, "--tolerance", "20%")[0] == 1  # 20 % of |about -160| is about 32
    code, out, _ = compare(capsys, a, b, "--tolerance", "40%")
    assert code == 0 and "| differs |" in out


def test_noise_inside_the_interval_is_the_same_not_identical(two_folders, capsys):
    a, b, _ = two_folders
    shift_returns(b, *SAC_PENDULUM, 1.0, at_steps=10000)  # far inside the seeds' spread of about 20
    g = by_group(compare_folders(a, b)[1])[SAC_PENDULUM]
    assert g.verdict == SAME and g.low < 0 < g.high and g.parts_at == 10000
    code, out, _ = compare(capsys, a, b)
    assert code == 0 and "| same within the interval |" in out


def test_the_curves_part_where_the_first_seed_does(two_folders):
    a, b, _ = two_folders
    shift_returns(b, *SAC_PENDULUM, 1.0, at_steps=10000)
    shift_returns(b, *SAC_PENDULUM, 1.0, at_steps=5000, seed=3)
    assert by_group(compare_folders(a, b)[1])[SAC_PENDULUM].parts_at == 5000


def diverge(folder, seed):
    path = folder / "curves.csv"
    lines = path.read_text().splitlines()
    row = next(
        i for i, line in enumerate(lines) if line.startswith("sac,gymnax/Pendulum-v1,") and f",{seed},10000," in line
    )
    lines[row] = lines[row].rsplit(",", 1)[0] + ",diverged"
    path.write_text("\n".join(lines) + "\n")


def test_a_diverged_seed_on_one_side_differs_whatever_the_tolerance(two_folders, capsys):
    a, b, _ = two_folders
    diverge(b, seed=2)
    g = by_group(compare_folders(a, b)[1])[SAC_PENDULUM]
    assert g.diverged == ((), (2,)) and g.verdict == DIFFERS and g.beyond(1e9)
    assert compare(capsys, a, b, "--tolerance", "1000")[0] == 1
    diverge(a, seed=1)  # one diverged seed a side, but not the same seed
    g = by_group(compare_folders(a, b)[1])[SAC_PENDULUM]
    assert g.diverged == ((1,), (2,)) and g.verdict == DIFFERS and g.beyond(1e9)


def test_one_seed_has_no_interval_and_the_tolerance_alone_decides(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    fixture_folder(a, seeds=1)
    shutil.copytree(a, b)
    shift_returns(b, *SAC_PENDULUM, 5.0, at_steps=10000)
    g = by_group(compare_folders(a, b)[1])[SAC_PENDULUM]
    assert g.verdict == NO_INTERVAL and g.difference == pytest.approx(5.0, abs=1e-3)
    assert compare(capsys, a, b)[0] == 1
    assert compare(capsys, a, b, "--tolerance", "4")[0] == 1
    assert compare(capsys, a, b, "--tolerance", "6")[0] == 0


def one_line_error(capsys, *argv) -> str:
    code, out, err = compare(capsys, *argv)
    assert code == 2 and not out and err.count("\n") == 1 and err.startswith("pgjax: error: ")
    return err


def test_bad_input_is_refused_in_one_line_naming_what_differs(two_folders, tmp_path, capsys):
    a, b, _ = two_folders
    assert f"{tmp_path / 'missing'} does not exist" in one_line_error(capsys, a, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "has no runs.json" in one_line_error(capsys, tmp_path / "empty", a)

    other = tmp_path / "other"
    shutil.copytree(a, other)
    meta = json.loads((other / "runs.json").read_text())
    (other / "runs.json").write_text(json.dumps({**meta, "sweep": "quick"}))
    assert "is sweep 'fixture'" in one_line_error(capsys, a, other) and "is sweep 'quick'" in one_line_error(
        capsys, a, other
    )

    lines = (b / "curves.csv").read_text().splitlines()
    short = [line for line in lines if not (line.startswith("sac,gymnax/Pendulum-v1,") and ",4,10000," in line)]
    (b / "curves.csv").write_text("\n".join(short) + "\n")
    err = one_line_error(capsys, a, b)
    assert "seed 4 was evaluated at other env steps" in err and "(2 points to 5,000 against 3 to 10,000)" in err

    kept = [line for line in lines if not line.startswith("ppo,brax/inverted_pendulum,")]
    (b / "curves.csv").write_text("\n".join(kept) + "\n")
    err = one_line_error(capsys, a, b)
    assert f"groups do not match: only in {a}: ppo on brax/inverted_pendulum" in err
    assert f"only in {a}: ppo on brax/inverted_pendulum" in one_line_error(capsys, b, a)  # only in B

    fewer = tmp_path / "fewer"
    fixture_folder(fewer, seeds=4)
    assert "ran seeds [0, 1, 2, 3, 4, 5]" in one_line_error(capsys, a, fewer)
    assert "--tolerance takes a number" in one_line_error(capsys, a, a, "--tolerance", "ten")
