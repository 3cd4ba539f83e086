import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FAST_COMPILE

from pgjax.envs import BRAX_TASKS, ENV_NAMES, make
from pgjax.envs.brax_env import make_brax
from pgjax.rollout import env_step


def run_steps(env, n, action_value, num_envs=2, key=0, compiler_options=None):
    from pgjax.envs import batch_reset, batch_step

    def go(k):
        state = batch_reset(env, k, num_envs)

        def body(s, kk):
            s = batch_step(env, s, jnp.full((num_envs, env.action_size), action_value), kk)
            return s, s

        return jax.lax.scan(body, state, jax.random.split(k, n))[1]

    return jax.jit(go, compiler_options=compiler_options)(jax.random.PRNGKey(key))


def test_gymnax_pendulum_truncates_at_time_limit_with_true_final_obs():
    env = make("gymnax/Pendulum-v1")
    assert (env.obs_size, env.action_size, env.max_episode_steps) == (3, 1, 200)
    traj = run_steps(env, 201, 0.3)
    trunc, term = np.asarray(traj.truncated), np.asarray(traj.terminated)
    assert not term.any()
    assert trunc[199].all() and trunc.sum() == 2  # step 200 of each env, nothing else
    # final_obs is the real last observation, obs already the reset one
    assert not np.allclose(traj.final_obs[199], traj.obs[199])
    np.testing.assert_allclose(traj.final_obs[198], traj.obs[198])
    np.testing.assert_allclose(traj.stats.episode_length[199], 0)
    np.testing.assert_allclose(traj.stats.last_length[199], 200)
    # episode return bookkeeping: the completed return is the sum of the episode's rewards
    np.testing.assert_allclose(traj.stats.last_return[199], np.asarray(traj.reward[:200]).sum(0), rtol=1e-4)


def test_brax_termination_is_not_truncation_and_time_limit_is():
    falls = make_brax("inverted_pendulum", "spring", episode_length=1000)
    # full push: the pole falls well before the time limit
    traj = run_steps(falls, 80, 1.0, compiler_options=FAST_COMPILE)
    assert np.asarray(traj.terminated).any() and not np.asarray(traj.truncated).any()
    short = make_brax("inverted_pendulum", "spring", episode_length=5)
    traj = run_steps(short, 6, 0.0, compiler_options=FAST_COMPILE)
    assert np.asarray(traj.truncated)[4].all() and not np.asarray(traj.terminated).any()
    assert not np.allclose(traj.final_obs[4], traj.obs[4])


def test_transition_stores_pre_reset_next_obs():
    env = make("gymnax/Pendulum-v1")
    from pgjax.envs import batch_reset

    state = batch_reset(env, jax.random.PRNGKey(0), 2)
    policy = lambda obs, k: (jnp.zeros((obs.shape[0], 1)), ())
    step = jax.jit(lambda s, k: env_step(env, s, policy, k))
    for i in range(200):
        state, transition = step(state, jax.random.PRNGKey(i))
    assert np.asarray(transition.truncated).all() and not np.asarray(transition.terminated).any()
    np.testing.assert_allclose(transition.next_obs, state.final_obs)
    assert not np.allclose(transition.next_obs, state.obs)


def test_actions_are_rescaled_to_bounds():
    env = make("gymnax/Pendulum-v1")
    # +1 at the interface is the maximal torque 2.0: angular velocity grows faster than with +0.5
    fast = run_steps(env, 3, 1.0)
    slow = run_steps(env, 3, 0.5)
    assert np.all(np.abs(fast.obs[-1, :, 2]) != np.abs(slow.obs[-1, :, 2]))


# the pendulums compile in under 8 s; the larger models take 12-20 s each and run with the slow tests
@pytest.mark.parametrize(
    "task", [t if "pendulum" in t else pytest.param(t, marks=pytest.mark.slow) for t in BRAX_TASKS]
)
def test_every_brax_env_resets_and_steps(task):
    env = make(f"brax/{task}")
    assert env.name in ENV_NAMES and env.backend == "generalized"
    traj = run_steps(env, 3, 0.1, num_envs=1, compiler_options=FAST_COMPILE)
    assert traj.obs.shape == (3, 1, env.obs_size)
    assert np.all(np.isfinite(traj.obs)) and np.all(np.isfinite(traj.reward))


def test_brax_episodes_start_from_fresh_random_states_across_pool_refills():
    """Every episode of every env starts from its own random state, also past the reset pool's size
    (the rollout refills the pools every REFRESH_EVERY steps)."""
    from pgjax.envs import batch_reset
    from pgjax.envs.pooled import POOL_SIZE, REFRESH_EVERY
    from pgjax.rollout import rollout

    env = make_brax("inverted_pendulum", "spring", episode_length=5)
    length = 2 * REFRESH_EVERY  # 12 episodes per env, more than one pool holds
    policy = lambda obs, k: (jnp.zeros((obs.shape[0], env.action_size)), ())

    def go(key):
        state = batch_reset(env, key, 2)
        return state.obs, rollout(env, state, policy, key, length)

    first, (_, traj) = jax.jit(go, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(0))
    assert not np.asarray(traj.terminated).any()
    ends = np.asarray(traj.truncated)[:, 0]
    starts = np.concatenate([np.asarray(first)[:1], np.asarray(traj.obs)[1:, 0][ends[:-1]]])
    assert len(starts) > POOL_SIZE
    distinct = {tuple(np.round(s, 6)) for s in starts}
    assert len(distinct) == len(starts)
    assert not np.allclose(first[0], first[1])  # and the two envs differ


def test_off_policy_warm_up_episodes_start_from_fresh_random_states():
    """The warm-up runs before the driver's first refill of the reset pools, which a reset fills with
    copies of its first state: its episodes too must each start from a state of their own."""
    from helpers import TINY

    from pgjax.config import build
    from pgjax.registry import get_agent

    env = make_brax("inverted_pendulum", "spring", episode_length=5)
    sac = get_agent("sac")
    steps_per_env = 20  # shorter than a refill period: the warm-up rollout does not refill on its own
    config = build(sac.Config, {**TINY["sac"], "num_envs": 2, "warmup_steps": 2 * steps_per_env}, "sac")
    state = jax.jit(lambda k: sac.init(k, env, config), compiler_options=FAST_COMPILE)(jax.random.PRNGKey(0))
    stored = {
        k: np.asarray(state.buffer.experience[k])[0, : 2 * steps_per_env].reshape(steps_per_env, 2, -1)
        for k in ("obs", "next_obs")
    }
    for e in range(2):
        obs, next_obs = stored["obs"][:, e], stored["next_obs"][:, e]
        ended = [t for t in range(steps_per_env - 1) if not np.array_equal(next_obs[t], obs[t + 1])]
        starts = [obs[0]] + [obs[t + 1] for t in ended]
        assert len(starts) >= 4
        assert len({tuple(np.round(s, 6)) for s in starts}) == len(starts)
