"""The DeepMind Control Suite through MuJoCo Playground: every task under jit and vmap, DMC's reward
scale, Playground's episode length, truncation with final_obs, vmapped seeds, and clear errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FAST_COMPILE, tiny_trainer
from test_envs import run_steps

from pgjax import aggregate
from pgjax.config import ConfigError
from pgjax.envs import DMC_TASKS, ENV_NAMES, make
from pgjax.names import check_env


def playground_config(task):
    from mujoco_playground._src import dm_control_suite

    return dm_control_suite.get_default_config(task)


def test_every_playground_dmc_task_is_offered():
    from mujoco_playground._src import dm_control_suite

    assert set(DMC_TASKS) == set(dm_control_suite.ALL_ENVS)
    assert all(f"dmc/{t}" in ENV_NAMES for t in DMC_TASKS)


# the small models compile in under 10 s each; the larger (walker, cheetah, hopper, finger, fish, swimmer,
# humanoid) take 12-46 s each and run with the slow tests
SMALL_MODELS = ("Acrobot", "BallInCup", "Cartpole", "Pendulum", "PointMass", "Reacher")


@pytest.mark.parametrize(
    "task", [t if t.startswith(SMALL_MODELS) else pytest.param(t, marks=pytest.mark.slow) for t in DMC_TASKS]
)
def test_every_dmc_task_resets_and_steps_under_jit_and_vmap(task):
    env = make(f"dmc/{task}")
    config = playground_config(task)
    assert env.backend == "jax"
    assert env.details["action_repeat"] == config.action_repeat
    assert env.max_episode_steps == env.details["episode_length"] == config.episode_length // config.action_repeat

    def random_steps(key):
        # two resets, each a vmapped pool of Playground resets, stacked: JAX traces Playground's reset once
        # (a vmap of the pooled reset would batch its loops twice over, the longest part of the test)
        state = jax.tree.map(lambda *x: jnp.stack(x), *[env.reset(k) for k in jax.random.split(key, 2)])

        def body(s, k):
            action = jax.random.uniform(k, (2, env.action_size), minval=-1.0, maxval=1.0)
            s = jax.vmap(env.step)(s, action, jax.random.split(k, 2))
            return s, (s.obs, s.reward, s.terminated)

        return jax.lax.scan(body, state, jax.random.split(key, 4))[1]

    # Swimmer's reset runs a loop that unoptimised code takes ~45 s to run, longer than it saves compiling
    options = None if task.startswith("Swimmer") else FAST_COMPILE
    obs, reward, terminated = jax.jit(random_steps, compiler_options=options)(jax.random.PRNGKey(0))
    assert obs.shape == (4, 2, env.obs_size) and np.all(np.isfinite(obs))
    # DMC's convention: every control step's reward lies in [0, 1]
    assert np.all(reward >= 0.0) and np.all(reward <= 1.0 * env.details["action_repeat"])
    assert not np.asarray(terminated).any()


def test_dmc_truncates_at_playgrounds_episode_length_with_the_last_observation():
    env = make("dmc/CartpoleBalance")
    traj = run_steps(env, env.max_episode_steps + 1, 0.0, compiler_options=FAST_COMPILE)
    trunc = np.asarray(traj.truncated)
    assert trunc[env.max_episode_steps - 1].all() and trunc.sum() == 2
    assert not np.asarray(traj.terminated).any()
    last = env.max_episode_steps - 1
    assert not np.allclose(traj.final_obs[last], traj.obs[last])  # obs is already the next episode's
    np.testing.assert_allclose(traj.final_obs[last - 1], traj.obs[last - 1])
    # doing nothing keeps the pole up for a while: a return between the random policy's and 1000
    returns = np.asarray(traj.stats.last_return[last])
    np.testing.assert_allclose(returns, np.asarray(traj.reward[: env.max_episode_steps]).sum(0), rtol=1e-4)
    assert np.all((returns > 500) & (returns < 1000))


@pytest.mark.slow
def test_dmc_seed_in_vmapped_batch_equals_seed_alone():
    from pgjax import driver

    trainer, config = tiny_trainer("ppo", "dmc/CartpoleBalance", num_evals=2)
    keys = driver.seed_keys([0, 1])
    _, batched = jax.jit(jax.vmap(trainer.train, in_axes=(0, None)), compiler_options=FAST_COMPILE)(keys, config)
    train_alone = jax.jit(trainer.train, compiler_options=FAST_COMPILE)
    alone = [train_alone(jax.random.PRNGKey(i), config)[1].eval_return_mean for i in range(2)]
    for i in range(2):
        # The batched and the single program round differently and MJX's solver amplifies it: on jax 0.11.2
        # seed 1's middle point moved by 1.9e-4 relative (0.09 of 508); 0.10.2 stayed under 1e-4.
        np.testing.assert_allclose(batched.eval_return_mean[i], alone[i], rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(batched.eval_return_mean[i, 0], alone[i][0])  # the initial policy exactly
    assert not np.allclose(alone[0], alone[1], rtol=1e-2)  # two seeds are far apart: the tolerance tells them apart


def test_dmc_bad_input_is_refused_in_one_line_before_anything_is_built():
    with pytest.raises(ConfigError, match="did you mean dmc/CheetahRun"):
        check_env("dmc/CheetaRun")
    with pytest.raises(ConfigError, match="unknown backend 'mjx' for dmc/CheetahRun; choose one of jax, warp"):
        check_env("dmc/CheetahRun", "mjx")
    try:
        import mujoco_warp  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="backend 'warp' for dmc/CheetahRun needs mujoco-warp.*available: jax"):
            check_env("dmc/CheetahRun", "warp")
    assert check_env("dmc/CheetahRun") == ("dmc/CheetahRun", "jax")


def test_dmc_tasks_are_normalised_on_dmcs_own_scale(tmp_path):
    from pgjax.sweep import load_scores

    scores = aggregate.with_dmc_scale(
        {"gymnax/Pendulum-v1": {"random": -1224.0, "reference": -157.0}}, ["dmc/CheetahRun", "gymnax/Pendulum-v1"]
    )
    assert scores["gymnax/Pendulum-v1"]["random"] == -1224.0
    s = scores["dmc/CheetahRun"]
    np.testing.assert_allclose(aggregate.normalize([0.0, 500.0, 1000.0], s["random"], s["reference"]), [0, 0.5, 1])
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[[run]]\nagent = "ppo"\nenv = "dmc/CheetahRun"\nsteps = 1000\n'
        '[scores."dmc/CheetahRun"]\nrandom = 1.0\nreference = 900.0\n'
    )
    with pytest.raises(ConfigError, match="DMC's own scale"):
        load_scores(sweep)


def test_playground_preset_maps_playgrounds_tuned_parameters_and_set_overrides_it(tmp_path):
    from mujoco_playground.config import dm_control_suite_params as params

    from pgjax.sweep import load_sweep

    brax_ppo = params.brax_ppo_config("CartpoleSwingup")
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[[run]]\nagent = "ppo"\nenv = "dmc/CartpoleSwingup"\nsteps = 2_000_000\npreset = "playground"\n'
        "config = { ent_coef = 0.0 }\n"
        '[[run]]\nagent = "sac"\nenv = "dmc/CartpoleSwingup"\nsteps = 100_000\npreset = "playground"\n'
    )
    _, (ppo, sac) = load_sweep(sweep)
    (p,), (s,) = ppo.configs, sac.configs
    assert (p.num_envs, p.num_epochs, p.num_minibatches) == (
        brax_ppo.num_envs,
        brax_ppo.num_updates_per_batch,
        brax_ppo.num_minibatches,
    )
    # the env steps of one Brax PPO update: batch_size x num_minibatches trajectories of unroll_length
    assert p.num_envs * p.rollout_length == brax_ppo.batch_size * brax_ppo.num_minibatches * brax_ppo.unroll_length
    assert (p.gamma, p.lr, p.anneal_lr, p.ent_coef) == (brax_ppo.discounting, brax_ppo.learning_rate, False, 0.0)
    brax_sac = params.brax_sac_config("CartpoleSwingup")
    assert (s.num_envs, s.gradient_steps, s.batch_size, s.warmup_steps) == (
        brax_sac.num_envs,
        brax_sac.grad_updates_per_step,
        brax_sac.batch_size,
        brax_sac.min_replay_size,
    )
    assert s.actor_lr == s.critic_lr == brax_sac.learning_rate and s.buffer_size == 100_000
    assert s.alpha_lr == 3e-4  # brax sac.train's temperature optimiser does not take learning_rate


def test_a_misspelt_or_misplaced_preset_is_refused_in_one_line(capsys):
    from pgjax import cli

    for preset, agent, env, words in [
        ("playgrnd", "ppo", "dmc/CartpoleBalance", "did you mean playground"),
        ("playground", "dsact", "dmc/CartpoleBalance", "for ppo and sac on dmc/ tasks"),
        ("playground", "ppo", "brax/hopper", "for ppo and sac on dmc/ tasks"),
    ]:
        assert cli.main(["run", agent, env, "--steps", "1000", "--preset", preset, "--out", "unused"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1


def test_compare_brax_refuses_bad_input_in_one_line_before_anything_runs(tmp_path, capsys):
    from pgjax import cli

    for args, words in [
        (["--steps", "0"], "must be >= 1"),
        (["--task", "CheetaRun"], "did you mean dmc/CheetahRun"),
        (["--trainers", "ours,bracks"], "unknown trainer(s) bracks"),
    ]:
        assert cli.main(["compare-brax", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_brax_compile_is_what_its_first_epoch_and_first_evaluation_took_beyond_the_steady_ones():
    from pgjax.trainer_comparison import brax_timing

    # set-up + evaluator compile + first evaluation 20 s; epochs 30 s (compiling), 5 s, 5 s; evaluations 2 s
    points = [
        {"env_steps": 0, "wall_s": 20.0},
        {"env_steps": 100, "wall_s": 52.0, "epoch_s": 30.0},
        {"env_steps": 200, "wall_s": 59.0, "epoch_s": 5.0},
        {"env_steps": 300, "wall_s": 66.5, "epoch_s": 5.0},
    ]
    timing = brax_timing(points, command_s=67.0)
    assert timing["compile_s"] == (30.0 - 5.0) + (20.0 - 2.0)
    assert timing["run_s"] == 67.0 - 43.0 and timing["env_steps"] == 300
    assert timing["epoch_steps_per_s"] == 100 / 5.0


def test_compare_brax_runs_only_the_pieces_not_yet_in_its_folder(tmp_path, monkeypatch, capsys):
    from pgjax import cli, trainer_comparison

    ran = []

    def fake(name):
        def run(agent, task, steps, evals, seeds, episodes, devices):
            ran.append((name, seeds, devices))
            return {
                "seeds": seeds,
                "command_s": 10.0,
                "compile_s": 4.0,
                "run_s": 6.0,
                "env_steps": steps,
                "curves": {str(s): [[0, 1.0], [steps, 100.0 + s]] for s in seeds},
            }

        return run

    monkeypatch.setattr(
        trainer_comparison, "TRAINERS", {k: (v[0], fake(k)) for k, v in trainer_comparison.TRAINERS.items()}
    )
    args = ["compare-brax", "--steps", "600", "--num-evals", "1", "--out", str(tmp_path)]
    assert cli.main([*args, "--seeds", "2", "--trainers", "ours,brax"]) == 0
    # 2 seeds split over the test session's 2 CPU devices, and each Brax call is given as many
    assert ran == [("ours", [0, 1], 2), ("brax", [0], 2), ("brax", [1], 2)]
    lines = (tmp_path / "pieces.jsonl").read_text().splitlines()
    (tmp_path / "pieces.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # the last piece cut off
    ran.clear()
    assert cli.main([*args, "--seeds", "2", "--trainers", "ours,brax,brax-published"]) == 0
    assert ran == [("brax", [1], 2), ("brax-published", [0], 2), ("brax-published", [1], 2)]
    ran.clear()
    assert cli.main([*args, "--seeds", "3", "--trainers", "brax"]) == 0  # 3 seeds: one device, on both sides
    assert ran == [("brax", [0], 1), ("brax", [1], 1), ("brax", [2], 1)]
    table = json.loads((tmp_path / "comparison.json").read_text())["ppo on dmc/CartpoleSwingup, 600 steps"]
    ours = table[trainer_comparison.TRAINERS["ours"][0]["ppo"] + ", 2 devices"]
    assert ours["commands"] == 1 and ours["steps_per_s"] == round(2 * 600 / 6.0)
    # pieces on different numbers of devices are never pooled
    brax = trainer_comparison.TRAINERS["brax"][0]["ppo"]
    assert table[brax + ", 2 devices"]["final_return"] == {"0": 100.0, "1": 101.0}
    assert table[brax + ", 1 device"]["commands"] == 3
    assert (tmp_path / "returns-ppo-CartpoleSwingup.png").exists() and (tmp_path / "table.md").exists()
    # the agent is part of a piece: SAC's pieces run apart from PPO's, and PPO-only trainers are refused
    ran.clear()
    assert cli.main([*args, "--agent", "sac", "--seeds", "2", "--trainers", "ours-brax,brax"]) == 0
    assert ran == [("ours-brax", [0, 1], 2), ("brax", [0], 2), ("brax", [1], 2)]
    assert cli.main([*args, "--agent", "sac", "--trainers", "brax-published"]) == 2
    assert "unknown trainer(s) brax-published for sac" in capsys.readouterr().err


def parity_rows(ours: list[float], brax: list[float]) -> list[dict]:
    def row(trainer, finals):
        return {
            "agent": "ppo",
            "task": "dmc/CartpoleSwingup",
            "trainer": trainer,
            "env_steps_per_seed": 100,
            "eval_episodes": 16,
            "devices": 2,
            "seeds": list(range(len(finals))),
            "compile_s": 1.0,
            "command_s": 2.0,
            "run_s": 1.0,
            "env_steps": 100,
            "curves": {str(s): [[0, 0.0], [100, f]] for s, f in enumerate(finals)},
        }

    return [row("ours-brax", ours), row("brax", brax)]


def test_parity_is_the_bootstrap_interval_of_the_mean_final_returns_difference_within_50():
    from pgjax.trainer_comparison import parity, summary

    name = "ppo on dmc/CartpoleSwingup, 100 steps"
    rng = np.random.default_rng(0)
    close = parity(parity_rows(list(500 + rng.normal(0, 10, 8)), list(505 + rng.normal(0, 10, 8))), name)
    assert (
        close["verdict"] == "parity"
        and -50 <= close["interval_95"][0] < close["difference"] < close["interval_95"][1] <= 50
    )
    ours, brax = 300 + rng.normal(0, 10, 8), 500 + rng.normal(0, 10, 8)
    far = parity(parity_rows(list(ours), list(brax)), name)
    assert far["verdict"] == "different" and abs(far["difference"] - (ours.mean() - brax.mean())) < 0.1
    wide = parity(parity_rows(list(500 + rng.normal(0, 150, 8)), list(500 + rng.normal(0, 150, 8))), name)
    assert wide["verdict"] == "undecided" and wide["seeds_needed"] > 8
    # the interval is a bootstrap of the difference of means: about ±1.96·sqrt(σ²/8 + σ²/8) for σ = 150
    half = (wide["interval_95"][1] - wide["interval_95"][0]) / 2
    assert 0.6 * 1.96 * 75 < half < 1.3 * 1.96 * 75
    assert summary(parity_rows([1.0, 2.0], [1.0, 2.0]))[name]["parity"]["verdict"] == "parity"
    assert "parity" not in summary(parity_rows([1.0, 2.0], [1.0, 2.0])[:1])[name]
