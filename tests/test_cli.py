"""Bad input: a one-line message that says what to change, exit code 2, no traceback, nothing compiled."""

import subprocess
import sys

import pytest

from pgjax import cli, runner
from pgjax.registry import AGENT_NAMES


@pytest.fixture(autouse=True)
def no_compilation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("bad input reached compilation")

    monkeypatch.setattr(runner, "compile_group", refuse)


def error_of(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("pgjax: error:") and "\n" not in err and "Traceback" not in err
    return err


RUN = ["run", "ppo", "gymnax/Pendulum-v1", "--steps", "10000"]
DSACT = ["run", "dsact", "gymnax/Pendulum-v1", "--steps", "20000"]
MDPO_ON = ["run", "mdpo_on", "gymnax/Pendulum-v1", "--steps", "100000"]
PMOE_SAC = ["run", "pmoe_sac", "gymnax/Pendulum-v1", "--steps", "20000", "--set", "warmup_steps=1000"]
PMOE_PPO = ["run", "pmoe_ppo", "gymnax/Pendulum-v1", "--steps", "100000"]
PG_RAINBOW = ["run", "pg_rainbow", "gymnax/Pendulum-v1", "--steps", "100000"]
NHARPG = ["run", "nharpg", "gymnax/Pendulum-v1", "--steps", "100000"]
MDPO_OFF = ["run", "mdpo_off", "gymnax/Pendulum-v1", "--steps", "20000", "--set", "warmup_steps=1000"]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["run", "ppp", "gymnax/Pendulum-v1", "--steps", "1000"], "did you mean ppo"),
        (["run", "ppo", "gymnax/Pendulum-v2", "--steps", "1000"], "did you mean gymnax/Pendulum-v1"),
        (["run", "sac", "hopper", "--steps", "1000"], "did you mean brax/hopper"),
        (RUN + ["--set", "lrr=1e-3"], "did you mean lr"),
        (RUN + ["--coordinator", "localhost:1234"], "--coordinator, --num-processes and --process-id go together"),
        (
            RUN + ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be in 0..1",
        ),
        (RUN + ["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "must be HOST:PORT"),
        (RUN + ["--cpu-devices", "0"], "--cpu-devices must be >= 1"),
        (RUN + ["--set", "lr=fast"], "'lr' (float) must be a number"),
        (RUN + ["--set", "num_envs=2.5"], "'num_envs' (int) must be an integer"),
        (RUN + ["--set", "lr=-3e-4"], "lr must be > 0"),
        (RUN + ["--set", "num_minibatches=7"], "must be divisible by num_minibatches"),
        (RUN + ["--seeds", "0"], "--seeds must be >= 1"),
        (RUN + ["--set", "gamma=1.5"], "gamma must be in [0, 1]"),
        (RUN + ["--set", "lr"], "--set takes field=value"),
        (["run", "ppo", "brax/hopper", "--steps", "1000", "--backend", "sprung"], "unknown backend 'sprung'"),
        (
            ["run", "sac", "gymnax/Pendulum-v1", "--steps", "1000", "--set", "warmup_steps=5000"],
            "warmup_steps = 5000 exceeds the replay buffer's capacity",
        ),
        # budgets that cannot run: refused before compiling, naming the fields to change
        (
            ["run", "sac", "gymnax/Pendulum-v1", "--steps", "200", "--set", "warmup_steps=100"],
            "batch_size = 256 exceeds the replay buffer's capacity min(buffer_size, total_steps) = 200",
        ),
        (
            [
                "run",
                "sac",
                "gymnax/Pendulum-v1",
                "--steps",
                "100000",
                "--set",
                "buffer_size=1000",
                "--set",
                "warmup_steps=5000",
            ],
            "warmup_steps = 5000 exceeds the replay buffer's capacity min(buffer_size, total_steps) = 1000 transitions: "
            "lower warmup_steps or raise buffer_size",
        ),
        (
            [
                "run",
                "sac",
                "gymnax/Pendulum-v1",
                "--steps",
                "5001",
                "--set",
                "warmup_steps=5000",
                "--set",
                "num_envs=2",
            ],
            "total_steps = 5001 leaves no training iteration after warmup_steps = 5000",
        ),
        (
            ["run", "ppo", "gymnax/Pendulum-v1", "--steps", "4000"],
            "total_steps = 4000 leaves no training iteration after warmup_steps = 0 (one iteration takes 4096 env steps)",
        ),
        (RUN + ["--matmul-precision", "fastest"], "unknown matmul precision 'fastest'"),
        (DSACT + ["--set", "critic_lr=-1e-4"], "critic_lr must be > 0"),
        (DSACT + ["--set", "delay_update=0"], "delay_update must be > 0"),
        (DSACT + ["--set", "epsilon=0"], "epsilon must be > 0"),
        (DSACT + ["--set", "activation=gelu2"], "activation must be one of"),
        (MDPO_OFF + ["--set", "tsallis_q=2.5"], "tsallis_q must be in [1, 2]"),
        (MDPO_OFF + ["--set", "tsallis_q=0.5"], "tsallis_q must be in [1, 2]"),
        (MDPO_OFF + ["--set", "kl_coef=-1"], "kl_coef must be >= 0"),
        (MDPO_OFF + ["--set", "entropy_coef=-0.2"], "entropy_coef must be >= 0"),
        (MDPO_OFF + ["--set", "sgd_steps=0"], "sgd_steps must be > 0"),
        (MDPO_ON + ["--set", "sgd_steps=0"], "sgd_steps must be > 0"),
        (MDPO_ON + ["--set", "value_clip=-0.1"], "value_clip must be > 0"),
        (PMOE_SAC + ["--set", "num_experts=0"], "num_experts must be > 0"),
        (PMOE_SAC + ["--set", "num_experts=2.5"], "'num_experts' (int) must be an integer"),
        (PMOE_SAC + ["--set", "eval_expert=best"], "eval_expert must be one of best_q, argmax, sample"),
        (PMOE_SAC + ["--set", "target_expert=max"], "target_expert must be one of sample, argmax_q"),
        (PMOE_PPO + ["--set", "num_experts=-1"], "num_experts must be > 0"),
        (PG_RAINBOW + ["--set", "num_quantiles=0"], "num_quantiles must be > 0"),
        (PG_RAINBOW + ["--set", "replay_rollouts=0"], "replay_rollouts must be > 0"),
        (PG_RAINBOW + ["--set", "switch_fraction=1.2"], "switch_fraction = 1.2 must lie in [0, 1]"),
        (PMOE_PPO + ["--set", "ent_coef=0.01"], "ent_coef must be 0"),
        (NHARPG + ["--set", "gamma_0=0"], "gamma_0 must be > 0"),
        (NHARPG + ["--set", "eta_0=1.5"], "eta_0 must be in (0, 1]"),
        (NHARPG + ["--set", "eta_0=0"], "eta_0 must be in (0, 1]"),
        (NHARPG + ["--set", "hessian_num_envs=0"], "hessian_num_envs must be > 0"),
        (NHARPG + ["--set", "variant=storm"], "variant must be one of nharpg, npg, harpg"),
    ],
)
def test_bad_run_arguments(capsys, argv, expected):
    assert expected in error_of(capsys, argv)


def test_a_group_too_big_for_a_device_is_refused_before_compiling_or_writing(capsys, tmp_path):
    """4 SAC seeds on 2 devices: each device holds two runs of 13.1 MB (a 200k-transition replay buffer of
    7.2 MB, networks, optimiser states and the best policy's copy), and a checkpoint's copy of them."""
    out = tmp_path / "out"
    err = error_of(
        capsys,
        [
            "run",
            "sac",
            "gymnax/Pendulum-v1",
            "--steps",
            "200000",
            "--seeds",
            "4",
            "--out",
            str(out),
            "--device-memory",
            "10M",
        ],
    )
    assert (
        "sac on gymnax/Pendulum-v1 needs about 52.5 MB per device (run state 26.3 MB, 14.4 MB of it replay "
        "buffers; a checkpoint's copy of it 26.3 MB; the compiled programs' scratch space not counted yet)"
    ) in err
    assert "more than a device's 10.0 MB (--device-memory)" in err
    assert (
        "now 2 run(s) on each of 2 device(s)" in err
        and "smaller replay buffers (14.4 MB per device now; `pgjax config sac` lists the fields that size them)" in err
    )
    assert not [p for p in out.iterdir() if p.name != ".pgjax-lock"]
    assert "--device-memory must be a size" in error_of(capsys, RUN + ["--device-memory", "lots"])


def test_missing_sweep_file(capsys, tmp_path):
    assert "does not exist" in error_of(capsys, ["sweep", str(tmp_path / "nope.toml")])


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[[run]\nagent = 'ppo'", "not valid TOML"),
        ("seeds = 2\n", "needs at least one [[run]]"),
        ("[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\n", "missing 'steps'"),
        (
            "[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\nsteps = 10000\nconfig = { lr = 'x' }\n",
            "must be a number",
        ),
        (
            "[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\nsteps = 10000\ngrid = { clip = [0.1] }\n",
            "did you mean clip_eps",
        ),
        ("seeds = 0\n[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\nsteps = 10000\n", "seeds must be"),
        ("[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\nsteps = 10000\nepochs = 3\n", "unknown keys ['epochs']"),
        (
            "matmul_precision = 'tf32'\n[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\nsteps = 10000\n",
            "unknown matmul precision 'tf32'",
        ),
    ],
)
def test_malformed_sweep_files(capsys, tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert expected in error_of(capsys, ["sweep", str(path)])


def test_bad_sweep_leaves_existing_results_untouched(capsys, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "curves.csv").write_text("precious\n")
    path = tmp_path / "bad.toml"
    path.write_text(
        "[[run]]\nagent = 'ppo'\nenv = 'gymnax/Pendulum-v1'\nsteps = 10000\n"
        "[[run]]\nagent = 'sac'\nenv = 'gymnax/Pendulum-v1'\nsteps = 100\n"
    )  # 2nd: warm-up > budget
    error_of(capsys, ["sweep", str(path), "--out", str(out)])
    assert (out / "curves.csv").read_text() == "precious\n"


def test_report_needs_results(capsys, tmp_path):
    assert "has no curves.csv" in error_of(capsys, ["report", str(tmp_path)])


def test_error_from_a_real_process_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "pgjax", "run", "ppo", "gymnax/Pendulum-v1", "--steps", "100", "--set", "lr=-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "lr must be > 0" in proc.stderr


def test_list_prints_agents_and_envs(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in AGENT_NAMES)
    assert "brax/humanoidstandup" in out and "gymnax/MountainCarContinuous-v0" in out


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_config_lists_exactly_the_agents_fields_with_kind_and_meaning(agent, capsys):
    import dataclasses

    from pgjax.registry import get_agent

    assert cli.main(["config", agent]) == 0
    lines = capsys.readouterr().out.splitlines()
    table, meaning_at = lines[1 : lines.index("")], lines[0].index("meaning")
    config = get_agent(agent).Config
    assert [line.split()[0] for line in table] == [f.name for f in dataclasses.fields(config)]
    for line, field in zip(table, dataclasses.fields(config)):
        static = not field.metadata.get("pytree_node", True)
        assert ("static" in line) == static and ("float (vmappable)" in line) == (not static)
        assert len(line[meaning_at:].strip()) > 3  # a meaning


def test_set_takes_toml_values_and_names_the_type_of_an_ill_typed_one(capsys):
    from pgjax.agents import ppo
    from pgjax.config import build, parse_assignments

    config = build(
        ppo.Config,
        parse_assignments(["hidden_sizes=[32, 16]", "anneal_lr=false", "lr=1e-3", "activation=relu", "num_envs=8"]),
        "ppo",
    )
    assert (config.hidden_sizes, config.anneal_lr, config.lr, config.activation) == ((32, 16), False, 1e-3, "relu")
    assert build(ppo.Config, parse_assignments(["hidden_sizes=64,64"]), "ppo").hidden_sizes == (64, 64)
    err = error_of(capsys, RUN + ["--set", 'hidden_sizes=[64, "wide"]'])
    assert "'hidden_sizes' (list of int)" in err
    err = error_of(capsys, RUN + ["--set", "lr=[0.1]"])
    assert "'lr' (float)" in err
    err = error_of(capsys, RUN + ["--set", "anneal_lr=3"])
    assert "'anneal_lr' (bool)" in err


def test_version(capsys):
    from pgjax import __version__

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"pgjax {__version__}"


def test_a_meaning_is_declared_with_its_field_whole_and_inherited_where_an_agent_only_changes_the_default():
    from pgjax import onpolicy
    from pgjax.agents import mdpo_on, pmoe_sac, sac
    from pgjax.config import field_meaning

    # declared with the field, so a meaning longer than one source line is kept whole
    assert field_meaning(sac.Config, "policy_std").endswith("LeCun weights ignore that scale)")
    assert field_meaning(pmoe_sac.Config, "critic_layer_norm") == field_meaning(sac.Config, "critic_layer_norm") != ""
    # MDPO-on redeclares rollout_length with its own default and no meaning: the loop's meaning stands
    assert mdpo_on.Config().rollout_length != onpolicy.Config().rollout_length
    assert field_meaning(mdpo_on.Config, "rollout_length") == field_meaning(onpolicy.Config, "rollout_length") != ""
