import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FAST_COMPILE, tiny_trainer, train_one

from pgjax import driver
from pgjax.agents import ppo
from pgjax.registry import AGENT_NAMES


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_same_seed_gives_identical_curve(agent):
    trainer, config = tiny_trainer(agent)
    _, a = train_one(trainer, config, 3)
    _, b = train_one(trainer, config, 3)
    np.testing.assert_array_equal(a.eval_return_mean, b.eval_return_mean)
    _, c = train_one(trainer, config, 4)
    assert not np.array_equal(a.eval_return_mean, c.eval_return_mean)


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_seed_in_vmapped_batch_equals_seed_alone(agent):
    trainer, config = tiny_trainer(agent)
    keys = driver.seed_keys([0, 1, 2, 3])
    _, batched = jax.jit(jax.vmap(trainer.train, in_axes=(0, None)), compiler_options=FAST_COMPILE)(keys, config)
    for i in range(4):
        _, alone = train_one(trainer, config, i)
        np.testing.assert_allclose(batched.eval_return_mean[i], alone.eval_return_mean, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "agent,field",
    [
        ("ppo", "lr"),
        ("sac", "critic_lr"),
        ("dsact", "critic_lr"),
        ("mdpo_on", "lr"),
        ("mdpo_off", "tsallis_q"),
        ("pg_rainbow", "switch_fraction"),
        ("nharpg", "gamma_0"),
    ],
)
def test_vmapped_learning_rates_equal_separate_runs(agent, field):
    trainer, config = tiny_trainer(agent)
    values = {"tsallis_q": (1.0, 1.5), "switch_fraction": (0.0, 0.5), "gamma_0": (0.05, 0.2)}.get(field, (1e-3, 3e-3))
    configs = [config.replace(**{field: v}) for v in values]
    fn = jax.jit(driver.over_seeds_and_configs(trainer.train, x_per_config=False), compiler_options=FAST_COMPILE)
    _, batched = fn(driver.seed_keys([0]), driver.stack_configs(configs))
    for j, c in enumerate(configs):
        _, alone = train_one(trainer, c, 0)
        np.testing.assert_allclose(batched.eval_return_mean[j, 0], alone.eval_return_mean, rtol=1e-4, atol=1e-3)
    # the two learning rates really are different runs
    assert not np.allclose(batched.eval_return_mean[0, 0, 1:], batched.eval_return_mean[1, 0, 1:])


def test_chunked_runner_equals_whole_train():
    """The host loop over jitted chunks (what sweeps run) gives the curve of the pure `train`."""
    from pgjax.groups import Group
    from pgjax.runner import run_group

    trainer, config = tiny_trainer("ppo")
    group = Group("ppo", "gymnax/Pendulum-v1", "gymnax", [0, 1], [config], num_evals=3, eval_episodes=2)
    result = run_group(group, progress=False)
    _, whole = jax.jit(jax.vmap(trainer.train, in_axes=(0, None)))(driver.seed_keys([0, 1]), config)
    chunked = np.array([[r["eval_return_mean"] for r in result.rows if r["seed"] == s] for s in (0, 1)])
    np.testing.assert_allclose(chunked, whole.eval_return_mean, rtol=1e-4, atol=1e-3)
    steps = [r["env_steps"] for r in result.rows if r["seed"] == 0]
    assert steps == [0, 64, 128, 192]


def test_schedule_counts_every_env_step():
    _, config = tiny_trainer("sac")
    from pgjax.registry import get_agent

    schedule = driver.make_schedule(get_agent("sac"), config, 3)
    assert schedule.warmup_steps == 20 and schedule.steps_per_iteration == 2
    assert list(schedule.eval_steps()) == [20, 32, 46, 60] and schedule.total_steps == 60  # the whole budget


def test_evaluation_does_not_change_training_state():
    trainer, config = tiny_trainer("ppo")
    run = jax.jit(trainer.init)(jax.random.PRNGKey(0), config)
    after, _ = jax.jit(trainer.evaluate)(run, config)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), run.agent_state, after.agent_state)
    assert all(jax.tree.leaves(same))


def test_ppo_run_spends_its_budget_writes_the_points_asked_for_and_anneals_to_zero():
    """7 iterations in 3 chunks (2, 2, 3): every point asked for, the whole budget, never more, and
    the learning rate of the last Adam step is 0."""

    budget = 4 * 8 * 7
    trainer, config = tiny_trainer("ppo", total_steps=budget)
    assert list(trainer.schedule.eval_steps()) == [0, 64, 128, budget]
    run, curve = train_one(trainer, config, 0)
    assert curve.eval_return_mean.shape == (4,)
    assert int(run.agent_state.learner.updates) == 7
    adam_count = int(run.agent_state.learner.opt_state[1][0].count)
    assert adam_count == 7 * config.num_epochs * config.num_minibatches
    lr = ppo.learning_rate(config)
    assert np.isclose(float(lr(0)), config.lr) and float(lr(adam_count - 1)) == 0.0


def test_runner_writes_k_plus_one_points_within_budget_or_says_what_it_writes(capsys):
    from pgjax.groups import make_group
    from pgjax.runner import run_group

    (group,) = make_group(
        "sac", "gymnax/Pendulum-v1", None, [0], [{**TINY_SAC, "total_steps": 61}], num_evals=4, eval_episodes=2
    )
    rows = run_group(group, progress=False).rows
    assert [r["env_steps"] for r in rows] == [20, 30, 40, 50, 60]  # 61 is not a whole iteration of 2 envs
    assert (
        "61 steps is not a whole number of iterations (2 env steps each after 20 of warm-up); running 60"
        in capsys.readouterr().err
    )
    (group,) = make_group(
        "sac", "gymnax/Pendulum-v1", None, [0], [{**TINY_SAC, "total_steps": 26}], num_evals=5, eval_episodes=2
    )
    rows = run_group(group, progress=False).rows
    assert [r["env_steps"] for r in rows] == [20, 22, 24, 26]
    assert (
        "num_evals = 5 exceeds the 3 iteration(s) the budget holds; writing 4 evaluation points"
        in capsys.readouterr().err
    )


TINY_SAC = {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16"}


def test_reported_run_time_includes_the_last_chunk():
    """A point's wall time is read once its values are on the host: JAX dispatches a chunk and returns at
    once, so a clock read at dispatch left a one-chunk run's whole training out of its run time."""
    import time

    from pgjax.groups import make_group
    from pgjax.runner import run_group

    (group,) = make_group(
        "ppo",
        "gymnax/Pendulum-v1",
        None,
        [0, 1],
        [
            {
                "num_envs": 64,
                "rollout_length": 64,
                "num_epochs": 4,
                "num_minibatches": 4,
                "hidden_sizes": [32, 32],
                "total_steps": 64 * 64 * 40,
            }
        ],
        num_evals=1,
        eval_episodes=2,
    )
    t0 = time.perf_counter()
    result = run_group(group, progress=False)
    outside_compile = time.perf_counter() - t0 - result.compile_s
    assert result.run_s >= 0.5 * outside_compile, (result.run_s, outside_compile)
    assert result.rows[-1]["wall_time_s"] == result.run_s


@pytest.mark.parametrize(
    "agent,init_copies",
    [("ppo", {"physics_reset": 1, "physics_step": 0}), ("sac", {"physics_reset": 2, "physics_step": 1})],
)
def test_each_program_holds_one_copy_of_the_physics_per_use(agent, init_copies):
    """XLA compiles a copy of the physics reset and step for every call site, and MJX's are large: init
    resets the envs (an off-policy init also refills and steps them for its warm-up), advance steps and
    refills them, evaluate resets and steps its own; nothing else may inline another copy."""
    from helpers import TINY

    from pgjax.bench import physics_copies
    from pgjax.groups import make_group
    from pgjax.programs import group_programs, prepare

    (group,) = make_group(agent, "brax/inverted_pendulum", None, [0], [dict(TINY[agent])], num_evals=2, eval_episodes=2)
    trainer, keys, configs, mesh = prepare(group)
    copies = {
        name: physics_copies(fn.trace(*args).jaxpr.jaxpr)
        for name, (fn, args) in group_programs(trainer, keys, configs, mesh).items()
    }
    once = {"physics_reset": 1, "physics_step": 1}
    assert copies == {"init": init_copies, "advance": once, "evaluate": once}
