"""PPO: Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347), continuous actions.

Read next to the paper's Algorithm 1 and the "37 implementation details" (Huang et al. 2022). The
shared on-policy loop (`pgjax.onpolicy`) runs the current policy for `rollout_length` steps in
`num_envs` environments and computes GAE advantages; PPO's update then takes `num_epochs` passes of
`num_minibatches` Adam steps on the clipped surrogate + clipped value loss - entropy bonus, with a
global gradient-norm clip and the learning rate annealed linearly to 0 over the run.
Policy: diagonal Gaussian, state-independent log-std; separate 64-64 tanh actor and value network.
The objective, the config and the learner live in `pgjax.ppo_core` (PMOE-PPO and PG-Rainbow build on
them); this file holds PPO's update.
Fields that reproduce Brax's `ppo.train` instead (`--preset brax`): `policy = "tanh_gaussian"`,
`value_hidden_sizes`, `kernel_init = "lecun_uniform"`, `clip_gradients = false`, `adam_eps = 1e-8`,
`clip_value_loss = false` and, in the loop, `reward_scale`, `mask_truncated`, `gae_segment` and
`advantage = "lambda_target"`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pgjax import gaussian_policy, onpolicy
from pgjax.envs import Env
from pgjax.ppo_core import Config, Learner, init_learner, optimizer, ppo_loss

act = gaussian_policy.act


def update(learner: Learner, batch: dict, key: jax.Array, env: Env, config: Config) -> tuple[Learner, dict]:
    """num_epochs x num_minibatches Adam steps on the joint loss of the policy and the value network."""
    step = onpolicy.descent_step(
        lambda params, mb: ppo_loss(params, learner.actor, learner.value_net, mb, config), optimizer(config)
    )
    carry = ((learner.actor_params, learner.value_params), learner.opt_state)
    ((actor_params, value_params), opt_state), info = onpolicy.minibatch_epochs(
        step, carry, batch, key, config.num_epochs, config.num_minibatches
    )
    return (
        learner.replace(
            actor_params=actor_params, value_params=value_params, opt_state=opt_state, updates=learner.updates + 1
        ),
        jax.tree.map(jnp.mean, info),
    )


agent = onpolicy.agent(
    Config=Config,
    init_learner=init_learner,
    sample=gaussian_policy.sample,
    value=gaussian_policy.value,
    update=update,
    act=act,
)
