"""Learning within a step budget, with fixed seeds (thresholds fixed in advance, never lowered): one table,
one row per agent and task."""

import numpy as np
import pytest

from pgjax.groups import make_group
from pgjax.runner import run_group


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


SMALL_OFF_POLICY = {"warmup_steps": 1000, "hidden_sizes": "64,64"}
PPO_LAYOUT = {"num_envs": 64, "rollout_length": 64}  # 64 envs x 64 steps, the agent's defaults otherwise
# DSAC-T at the SAC test's learning rates: the paper's 1e-4 (tuned for 1.5M-iteration MuJoCo runs)
# reaches only about -415 on Pendulum in 20k steps.
DSACT_SMALL = {"num_envs": 1, "gradient_steps": 1, **SMALL_OFF_POLICY, "actor_lr": 3e-4, "critic_lr": 3e-4}
# SAC on DMC: 8 envs and 8 gradient steps per iteration (one per env step), 64-64 networks, and Playground's
# learning rate for SAC on DMC (1e-3). At SAC's default 3e-4 one seed in about eight stays near 600 at 100k,
# and which one depends on the device layout: seeds 0-3 on two CPU devices (as here) gave 999, 593, 978, 994
# (mean 891). At 1e-3 seeds 0-7 gave 993, 984, 798, 966, 937, 997, 999, 992.
SAC_DMC = {
    "num_envs": 8,
    "gradient_steps": 8,
    **SMALL_OFF_POLICY,
    "actor_lr": 1e-3,
    "critic_lr": 1e-3,
    "alpha_lr": 1e-3,
}

PENDULUM, INVERTED_PENDULUM, CARTPOLE_BALANCE = "gymnax/Pendulum-v1", "brax/inverted_pendulum", "dmc/CartpoleBalance"

# agent, env, seeds, env steps, evaluation points, config, the final mean return it must reach
LEARNING = [
    pytest.param("ppo", PENDULUM, 8, 1_000_000, 5, {}, -250, id="ppo-pendulum-1m"),
    pytest.param("sac", PENDULUM, 4, 20_000, 5, SMALL_OFF_POLICY, -250, id="sac-pendulum-20k"),
    pytest.param("ppo", INVERTED_PENDULUM, 4, 200_000, 4, {}, 900, id="ppo-inverted_pendulum-200k"),
    pytest.param("dsact", PENDULUM, 4, 20_000, 5, DSACT_SMALL, -250, id="dsact-pendulum-20k"),
    pytest.param("dsact", INVERTED_PENDULUM, 4, 30_000, 4, DSACT_SMALL, 900, id="dsact-inverted_pendulum-30k"),
    pytest.param("mdpo_on", PENDULUM, 8, 1_000_000, 5, PPO_LAYOUT, -300, id="mdpo_on-pendulum-1m"),
    pytest.param("mdpo_off", PENDULUM, 4, 20_000, 5, SMALL_OFF_POLICY, -250, id="mdpo_off-pendulum-20k"),
    pytest.param("mdpo_on", INVERTED_PENDULUM, 4, 200_000, 4, {}, 900, id="mdpo_on-inverted_pendulum-200k"),
    pytest.param(
        "mdpo_off", INVERTED_PENDULUM, 4, 30_000, 4, SMALL_OFF_POLICY, 900, id="mdpo_off-inverted_pendulum-30k"
    ),
    pytest.param("pmoe_sac", PENDULUM, 4, 20_000, 5, SMALL_OFF_POLICY, -250, id="pmoe_sac-pendulum-20k"),
    pytest.param("pmoe_ppo", PENDULUM, 8, 1_000_000, 5, PPO_LAYOUT, -300, id="pmoe_ppo-pendulum-1m"),
    pytest.param(
        "pmoe_sac", INVERTED_PENDULUM, 4, 30_000, 4, SMALL_OFF_POLICY, 900, id="pmoe_sac-inverted_pendulum-30k"
    ),
    pytest.param("pmoe_ppo", INVERTED_PENDULUM, 4, 100_000, 4, {}, 900, id="pmoe_ppo-inverted_pendulum-100k"),
    # PG-Rainbow's defaults otherwise: V_ψ from 10 % of the run
    pytest.param("pg_rainbow", PENDULUM, 8, 1_000_000, 5, PPO_LAYOUT, -300, id="pg_rainbow-pendulum-1m"),
    pytest.param("pg_rainbow", INVERTED_PENDULUM, 4, 200_000, 4, {}, 900, id="pg_rainbow-inverted_pendulum-200k"),
    # PPO's defaults; doing nothing scores about 700 and uniform random actions about 340
    pytest.param("ppo", CARTPOLE_BALANCE, 4, 1_000_000, 4, {}, 900, id="ppo-cartpole_balance-1m"),
    pytest.param("sac", CARTPOLE_BALANCE, 4, 100_000, 4, SAC_DMC, 900, id="sac-cartpole_balance-100k"),
]


@pytest.mark.slow
@pytest.mark.parametrize("agent, env, seeds, steps, num_evals, config, threshold", LEARNING)
def test_agent_learns_the_task_within_its_budget(agent, env, seeds, steps, num_evals, config, threshold):
    assert final_mean_return(agent, env, seeds=seeds, steps=steps, num_evals=num_evals, **config) >= threshold
