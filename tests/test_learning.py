"""Learning within a step budget, with fixed seeds (thresholds fixed in advance, never lowered)."""

import numpy as np
import pytest

from pgjax.runner import make_group, run_group


def final_mean_return(agent, env, seeds, steps, num_evals=5, **overrides):
    (group,) = make_group(
        agent,
        env,
        None,
        list(range(seeds)),
        [{**overrides, "total_steps": steps}],
        num_evals=num_evals,
        eval_episodes=8,
    )
    result = run_group(group, progress=False)
    assert not result.diverged.any()
    return float(np.mean(result.final_returns))


@pytest.mark.slow
def test_ppo_learns_gymnax_pendulum():
    assert final_mean_return("ppo", "gymnax/Pendulum-v1", seeds=8, steps=1_000_000) >= -250


@pytest.mark.slow
def test_sac_learns_gymnax_pendulum_in_20k_steps():
    assert (
        final_mean_return("sac", "gymnax/Pendulum-v1", seeds=4, steps=20_000, warmup_steps=1000, hidden_sizes="64,64")
        >= -250
    )


@pytest.mark.slow
def test_ppo_learns_brax_inverted_pendulum():
    assert final_mean_return("ppo", "brax/inverted_pendulum", seeds=4, steps=200_000, num_evals=4) >= 900


# DSAC-T at the SAC test's learning rates: the paper's 1e-4 (tuned for 1.5M-iteration MuJoCo runs)
# reaches only about -415 on Pendulum in 20k steps.
DSACT_SMALL = {
    "num_envs": 1,
    "gradient_steps": 1,
    "warmup_steps": 1000,
    "hidden_sizes": "64,64",
    "actor_lr": 3e-4,
    "critic_lr": 3e-4,
}


@pytest.mark.slow
def test_dsact_learns_gymnax_pendulum_in_20k_steps():
    assert final_mean_return("dsact", "gymnax/Pendulum-v1", seeds=4, steps=20_000, **DSACT_SMALL) >= -250


@pytest.mark.slow
def test_dsact_learns_brax_inverted_pendulum_in_30k_steps():
    assert (
        final_mean_return("dsact", "brax/inverted_pendulum", seeds=4, steps=30_000, num_evals=4, **DSACT_SMALL) >= 900
    )


@pytest.mark.slow
def test_mdpo_on_learns_gymnax_pendulum():
    """PPO's layout (64 envs x 64 steps) and MDPO-on's defaults otherwise."""
    assert (
        final_mean_return("mdpo_on", "gymnax/Pendulum-v1", seeds=8, steps=1_000_000, num_envs=64, rollout_length=64)
        >= -300
    )


@pytest.mark.slow
def test_mdpo_off_learns_gymnax_pendulum_in_20k_steps():
    assert (
        final_mean_return(
            "mdpo_off", "gymnax/Pendulum-v1", seeds=4, steps=20_000, warmup_steps=1000, hidden_sizes="64,64"
        )
        >= -250
    )


@pytest.mark.slow
def test_mdpo_on_learns_brax_inverted_pendulum_in_200k_steps():
    assert final_mean_return("mdpo_on", "brax/inverted_pendulum", seeds=4, steps=200_000, num_evals=4) >= 900


@pytest.mark.slow
def test_mdpo_off_learns_brax_inverted_pendulum_in_30k_steps():
    assert (
        final_mean_return(
            "mdpo_off",
            "brax/inverted_pendulum",
            seeds=4,
            steps=30_000,
            num_evals=4,
            warmup_steps=1000,
            hidden_sizes="64,64",
        )
        >= 900
    )


@pytest.mark.slow
def test_pmoe_sac_learns_gymnax_pendulum_in_20k_steps():
    assert (
        final_mean_return(
            "pmoe_sac", "gymnax/Pendulum-v1", seeds=4, steps=20_000, warmup_steps=1000, hidden_sizes="64,64"
        )
        >= -250
    )


@pytest.mark.slow
def test_pmoe_ppo_learns_gymnax_pendulum():
    assert (
        final_mean_return("pmoe_ppo", "gymnax/Pendulum-v1", seeds=8, steps=1_000_000, num_envs=64, rollout_length=64)
        >= -300
    )


@pytest.mark.slow
def test_pmoe_sac_learns_brax_inverted_pendulum_in_30k_steps():
    assert (
        final_mean_return(
            "pmoe_sac",
            "brax/inverted_pendulum",
            seeds=4,
            steps=30_000,
            num_evals=4,
            warmup_steps=1000,
            hidden_sizes="64,64",
        )
        >= 900
    )


@pytest.mark.slow
def test_pmoe_ppo_learns_brax_inverted_pendulum_in_100k_steps():
    assert final_mean_return("pmoe_ppo", "brax/inverted_pendulum", seeds=4, steps=100_000, num_evals=4) >= 900


@pytest.mark.slow
def test_pg_rainbow_learns_gymnax_pendulum():
    """PPO's layout (64 envs x 64 steps) and PG-Rainbow's defaults otherwise (V_ψ from 10 % of the run)."""
    assert (
        final_mean_return("pg_rainbow", "gymnax/Pendulum-v1", seeds=8, steps=1_000_000, num_envs=64, rollout_length=64)
        >= -300
    )


@pytest.mark.slow
def test_pg_rainbow_learns_brax_inverted_pendulum_in_200k_steps():
    assert final_mean_return("pg_rainbow", "brax/inverted_pendulum", seeds=4, steps=200_000, num_evals=4) >= 900


@pytest.mark.slow
def test_ppo_learns_dmc_cartpole_balance_in_1m_steps():
    """PPO's defaults; doing nothing scores about 700 and uniform random actions about 340."""
    assert final_mean_return("ppo", "dmc/CartpoleBalance", seeds=4, steps=1_000_000, num_evals=4) >= 900


@pytest.mark.slow
def test_sac_learns_dmc_cartpole_balance_in_100k_steps():
    """8 envs and 8 gradient steps per iteration (one per env step), 64-64 networks, and Playground's
    learning rate for SAC on DMC (1e-3). At SAC's default 3e-4 one seed in about eight stays near 600
    at 100k, and which one depends on the device layout: seeds 0-3 on two CPU devices (as here) gave
    999, 593, 978, 994 (mean 891). At 1e-3 seeds 0-7 gave 993, 984, 798, 966, 937, 997, 999, 992."""
    assert (
        final_mean_return(
            "sac",
            "dmc/CartpoleBalance",
            seeds=4,
            steps=100_000,
            num_evals=4,
            num_envs=8,
            gradient_steps=8,
            hidden_sizes="64,64",
            warmup_steps=1000,
            actor_lr=1e-3,
            critic_lr=1e-3,
            alpha_lr=1e-3,
        )
        >= 900
    )
