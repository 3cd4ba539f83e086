"""Small budgets that exercise the whole train loop in seconds."""
import jax

from pgjax import driver
from pgjax.config import build
from pgjax.envs import make
from pgjax.registry import get_agent

TINY = {
    "ppo": {"num_envs": 4, "rollout_length": 8, "num_epochs": 2, "num_minibatches": 2, "total_steps": 4 * 8 * 6},
    "sac": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "dsact": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "mdpo_on": {"num_envs": 4, "rollout_length": 8, "num_epochs": 2, "num_minibatches": 2, "sgd_steps": 3,
                "total_steps": 4 * 8 * 6},
    "mdpo_off": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "pmoe_sac": {"num_envs": 2, "batch_size": 16, "warmup_steps": 20, "hidden_sizes": "16,16", "total_steps": 60},
    "pmoe_ppo": {"num_envs": 4, "rollout_length": 8, "num_epochs": 2, "num_minibatches": 2, "q_hidden_sizes": "16,16",
                 "total_steps": 4 * 8 * 6},
    "pg_rainbow": {"num_envs": 4, "rollout_length": 8, "num_epochs": 2, "num_minibatches": 2, "iqn_batch_size": 16,
                   "iqn_updates": 2, "replay_rollouts": 2, "iqn_hidden_sizes": "16,16", "total_steps": 4 * 8 * 6},
    "nharpg": {"num_envs": 4, "rollout_length": 8, "hessian_num_envs": 2, "hidden_sizes": "16,16",
               "total_steps": (4 + 2) * 8 * 6},
}


def tiny_trainer(agent_name: str, env_name: str = "gymnax/Pendulum-v1", num_evals: int = 3, **overrides):
    agent = get_agent(agent_name)
    config = build(agent.Config, {**TINY[agent_name], **overrides}, agent_name)
    env = make(env_name)
    trainer = driver.Trainer(agent, env, driver.make_schedule(agent, config, num_evals), eval_episodes=2)
    return trainer, config


def train_one(trainer, config, seed: int):
    return jax.jit(trainer.train)(jax.random.PRNGKey(seed), config)
