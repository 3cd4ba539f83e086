"""A results folder written by hand (curves.csv and runs.json as a sweep writes them) for the tests
of reports and folder comparisons."""

import csv
import json

import numpy as np

SCORES = {
    "gymnax/Pendulum-v1": {"random": -1200.0, "reference": -150.0, "source": "fixture"},
    "brax/inverted_pendulum": {"random": 30.0, "reference": 1000.0, "source": "fixture"},
}
LEVEL = {
    ("ppo", "gymnax/Pendulum-v1"): -300.0,
    ("sac", "gymnax/Pendulum-v1"): -160.0,
    ("ppo", "brax/inverted_pendulum"): 900.0,
    ("sac", "brax/inverted_pendulum"): 400.0,
}


def fixture_folder(path, seeds):
    """A results folder of two agents on two tasks, 3 evaluation points; returns each final return."""
    rng = np.random.default_rng(0)
    rows, configs, finals = [], {}, {}
    for (agent, env), level in LEVEL.items():
        cid = f"{agent}-{abs(hash(env)) % 10**8:08x}"
        configs[cid] = {"agent": agent, "env": env, "backend": env.split("/")[0], "config": {"lr": 3e-4}}
        for seed in range(seeds):
            for steps, frac in ((0, 0.0), (5000, 0.5), (10000, 1.0)):
                value = SCORES[env]["random"] + frac * (level - SCORES[env]["random"]) + rng.normal(0, 20)
                rows.append(
                    {
                        "agent": agent,
                        "env": env,
                        "backend": env.split("/")[0],
                        "config_id": cid,
                        "seed": seed,
                        "env_steps": steps,
                        "wall_time_s": 1.0,
                        "eval_return_mean": value,
                        "eval_return_std": 1.0,
                        "train_return_mean": value,
                        "status": "ok",
                    }
                )
            finals.setdefault(agent, {}).setdefault(env, []).append(value)
    path.mkdir()
    with open(path / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (path / "runs.json").write_text(
        json.dumps({"sweep": "fixture", "configs": configs, "groups": [], "scores": SCORES})
    )
    return finals


def shift_returns(folder, agent, env, by, at_steps=None, seed=None):
    """Adds `by` to one group's stored returns (at every point, or at `at_steps` only; of every seed, or of
    `seed` only)."""
    with open(folder / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if (
            (r["agent"], r["env"]) == (agent, env)
            and at_steps in (None, int(r["env_steps"]))
            and seed in (None, int(r["seed"]))
        ):
            r["eval_return_mean"] = str(float(r["eval_return_mean"]) + by)
    with open(folder / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
