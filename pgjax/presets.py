"""Named hyperparameter presets: `--preset playground` (or `preset = "playground"` in a sweep file).

`playground`: MuJoCo Playground's tuned Brax PPO and SAC hyperparameters for each DMC task
(`mujoco_playground.config.dm_control_suite_params`, read from the installed package), mapped onto our
`ppo` and `sac` Configs; where Brax's trainer makes a choice of its own (reward scaling, its squashed
policy, its network sizes, ...), the preset keeps ours. `brax`: the same parameters and every one of
Brax's choices we have a field for, so that ours reproduces Brax's trainer (the preset table in docs/environments.md
lists each choice and what is left). The budget (Playground's `num_timesteps`) is not part of a preset:
a run's steps are always given (`playground_budget` reports Playground's).
"""

from __future__ import annotations

from pgjax.config import ConfigError, did_you_mean

PRESETS = {"playground": {"ppo", "sac"}, "brax": {"ppo", "sac"}}


def check_preset(name: str, agent: str, env: str) -> None:
    """A one-line error unless preset `name` exists for `agent` on `env`."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}{did_you_mean(name, tuple(PRESETS))} (presets: {', '.join(PRESETS)})"
        )
    if agent not in PRESETS[name] or not env.startswith("dmc/"):
        raise ConfigError(
            f"preset {name!r} exists for {' and '.join(sorted(PRESETS[name]))} on dmc/ tasks (not {agent} on {env})"
        )


def _playground_params(agent: str, task: str):
    from mujoco_playground.config import dm_control_suite_params as params

    return params.brax_ppo_config(task) if agent == "ppo" else params.brax_sac_config(task)


def playground_budget(agent: str, env: str) -> int:
    """Playground's own env-step budget (`num_timesteps`) for `agent` on a dmc/ task."""
    return int(_playground_params(agent, env.split("/", 1)[1]).num_timesteps)


def _ppo_fields(p) -> dict:
    # Brax's PPO gathers batch_size * num_minibatches trajectories of unroll_length steps per update, as
    # batch_size * num_minibatches / num_envs consecutive unrolls of every env: our rollout of that length.
    unrolls_per_env = p.batch_size * p.num_minibatches // p.num_envs
    return {
        "num_envs": int(p.num_envs),
        "rollout_length": int(p.unroll_length * unrolls_per_env),
        "num_minibatches": int(p.num_minibatches),
        "num_epochs": int(p.num_updates_per_batch),
        "gamma": float(p.discounting),
        "lr": float(p.learning_rate),
        "anneal_lr": False,
        "ent_coef": float(p.entropy_cost),
        "normalize_observations": bool(p.normalize_observations),
        # brax ppo.train's defaults where Playground sets none
        "clip_eps": float(p.get("clipping_epsilon", 0.3)),
        "gae_lambda": float(p.get("gae_lambda", 0.95)),
        "vf_coef": float(p.get("vf_loss_coefficient", 0.5)),
        "activation": "swish",
    }


def _sac_fields(p, total_steps: int) -> dict:
    return {
        "num_envs": int(p.num_envs),
        "gradient_steps": int(p.grad_updates_per_step),
        "batch_size": int(p.batch_size),
        "warmup_steps": int(p.min_replay_size),
        # a buffer larger than the run is never filled: the same as one that holds the run
        "buffer_size": int(min(p.max_replay_size, total_steps)),
        "gamma": float(p.discounting),
        "reward_scale": float(p.reward_scaling),
        "normalize_observations": bool(p.normalize_observations),
        "actor_lr": float(p.learning_rate),
        "critic_lr": float(p.learning_rate),
        "alpha_lr": 3e-4,  # brax sac.train's temperature optimiser ignores learning_rate
        "tau": 0.005,
        "init_alpha": 1.0,
        "target_entropy_scale": 0.5,  # brax sac: target entropy -|A|/2
        "hidden_sizes": (256, 256),
        "activation": "relu",
    }


def _brax_ppo_choices(p) -> dict:
    """Brax `ppo.train`'s own choices where they differ from ours, as Playground calls it."""
    network = dict(p.get("network_factory", {}))
    clip = p.get("max_grad_norm")
    return {
        "scale_rewards": False,
        "reward_scale": float(p.reward_scaling),
        "policy": "tanh_gaussian",
        "kernel_init": "lecun_uniform",
        "adam_eps": 1e-8,
        "hidden_sizes": tuple(network.get("policy_hidden_layer_sizes", (32,) * 4)),  # brax's defaults
        "value_hidden_sizes": tuple(network.get("value_hidden_layer_sizes", (256,) * 5)),
        "clip_gradients": clip is not None,
        **({"max_grad_norm": float(clip)} if clip is not None else {}),
        "clip_value_loss": False,
        "mask_truncated": True,
        "gae_segment": int(p.unroll_length),
        "advantage": "lambda_target",
    }


def _brax_sac_choices(p) -> dict:
    """Brax `sac.train`'s own choices where they differ from ours, as Playground calls it."""
    network = dict(p.get("network_factory", {}))
    return {
        "critic_layer_norm": bool(network.get("q_network_layer_norm", False)),
        "policy_std": "softplus",
        "kernel_init": "lecun_uniform",
        "mask_truncated": True,
        "actor_on_updated_critics": False,
        "temperature_loss": "alpha",
        "random_warmup": False,  # brax prefills its replay with the initial policy
        **({"hidden_sizes": tuple(network["hidden_layer_sizes"])} if "hidden_layer_sizes" in network else {}),
    }


def preset_overrides(name: str, agent: str, env: str, total_steps: int) -> dict:
    """The config fields preset `name` sets for `agent` on `env` (all three checked first)."""
    from pgjax.names import check_agent, check_env

    check_env(env)
    check_preset(name, check_agent(agent), env)
    params = _playground_params(agent, env.split("/", 1)[1])
    if int(params.action_repeat) != 1:  # our dmc/ envs repeat as Playground's default_config says (1)
        raise ConfigError(
            f"Playground's {agent} parameters for {env} repeat actions {params.action_repeat} times; "
            "pgjax's dmc/ tasks use Playground's default_config() (no repeat)"
        )
    fields = _ppo_fields(params) if agent == "ppo" else _sac_fields(params, total_steps)
    if name == "brax":
        fields.update(_brax_ppo_choices(params) if agent == "ppo" else _brax_sac_choices(params))
    return fields
