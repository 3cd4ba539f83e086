"""`pgjax compare-official`: our `dsact` beside the run the DSAC-T authors committed to their repository
(Jingliang-Duan/DSAC-v2 at 53447f4, `results/DSAC_V2_gym_pendulum/240223-003213`: one seed on gym's
Pendulum-v1, its `config.json` and its evaluation return by collected samples, both copied unchanged into
`official/` of the results folder). Ours runs `sweeps/dsact_official.toml` (that configuration on gymnax's
Pendulum-v1, the same sample budget and evaluation layout, several seeds; a repeated command resumes it and
skips what is finished); the comparison plots ours over theirs and gives the collected samples at which each
run's evaluation return first reaches THRESHOLD. A comparison: it records figures and asserts nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

THRESHOLD = -250.0
OFFICIAL_CURVE = "official/evaluation_return_by_collected_samples.csv"
SOURCE = (
    "Jingliang-Duan/DSAC-v2 at 53447f4, results/DSAC_V2_gym_pendulum/240223-003213 "
    "(data/Evaluation_3. TAR-Collected samples.csv)"
)


def first_reach(curve: list[tuple[int, float]], threshold: float = THRESHOLD) -> int | None:
    """The first sample count at which the evaluation return is at least `threshold` (None: never)."""
    return next((int(steps) for steps, value in curve if value >= threshold), None)


def official_curve(folder: Path) -> list[tuple[int, float]]:
    with open(folder / OFFICIAL_CURVE) as f:
        return [(int(row["Step"]), float(row["Value"])) for row in csv.DictReader(f)]


def our_curves(folder: Path) -> dict[int, list[tuple[int, float]]]:
    """Each seed's (env steps, evaluation return) from the sweep's curves.csv."""
    out: dict[int, list[tuple[int, float]]] = {}
    with open(folder / "curves.csv") as f:
        for row in csv.DictReader(f):
            if row["agent"] == "dsact" and row["status"] == "ok":
                out.setdefault(int(row["seed"]), []).append((int(row["env_steps"]), float(row["eval_return_mean"])))
    return {seed: sorted(curve) for seed, curve in sorted(out.items())}


def comparison(folder: Path) -> dict:
    ours, theirs = our_curves(folder), official_curve(folder)
    reached = {seed: first_reach(curve) for seed, curve in ours.items()}
    hit = [r for r in reached.values() if r is not None]
    return {
        "threshold": THRESHOLD,
        "official_source": SOURCE,
        "official": {
            "samples": theirs[-1][0],
            "first_reaches_threshold_at": first_reach(theirs),
            "final_return": theirs[-1][1],
        },
        "ours": {
            "seeds": len(ours),
            "samples": max(c[-1][0] for c in ours.values()),
            "first_reaches_threshold_at": reached,
            "median_first_reach": float(np.median(hit)) if len(hit) == len(reached) else None,
            "seeds_reaching": len(hit),
            "final_return": {s: c[-1][1] for s, c in ours.items()},
            "final_return_mean": round(float(np.mean([c[-1][1] for c in ours.values()])), 1),
        },
    }


def markdown(result: dict) -> str:
    o, t = result["ours"], result["official"]
    reached = ", ".join(f"{r:,}" if r is not None else "never" for r in o["first_reaches_threshold_at"].values())
    finals = ", ".join(f"{v:.0f}" for v in o["final_return"].values())
    return (
        f"| run | seeds | samples | first reaches {result['threshold']:g} at | final return |\n|---|---|---|---|---|\n"
        f"| official DSAC-T ({t['samples']:,} samples) | 1 | {t['samples']:,} | {t['first_reaches_threshold_at']:,} | "
        f"{t['final_return']:.0f} |\n"
        f"| ours (`dsact`) | {o['seeds']} | {o['samples']:,} | {reached} | {finals} (mean {o['final_return_mean']}) |\n"
    )


def plot(folder: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, theirs = our_curves(folder), official_curve(folder)
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = sorted({s for c in ours.values() for s, _ in c})
    values = np.array([[dict(c).get(s, np.nan) for s in steps] for c in ours.values()])
    ax.plot(steps, np.nanmean(values, 0), label=f"ours, mean of {len(ours)} seeds (band: min-max)")
    ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), alpha=0.2)
    ax.plot(*zip(*theirs), label="official DSAC-v2 run (1 seed)", color="black", lw=1)
    ax.axhline(result["threshold"], ls=":", color="grey")
    ax.set_title("DSAC-T on Pendulum-v1, the official run's configuration", fontsize=9)
    ax.set_xlabel("collected samples (env steps, warm-up included)")
    ax.set_ylabel("evaluation return (5 episodes)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "returns.png", dpi=110)
    plt.close(fig)


def write_comparison(folder: Path) -> dict:
    from pgjax.results import writing

    result = comparison(folder)
    for name, text in (("comparison.json", json.dumps(result, indent=1) + "\n"), ("table.md", markdown(result))):
        with writing(folder / name):
            (folder / name).write_text(text)
    plot(folder, result)
    return result


def main(args) -> int:
    from pgjax.config import ConfigError
    from pgjax.sweep import WriteOptions, load_scores, load_sweep, run_groups

    out = Path(args.out)
    if not (out / OFFICIAL_CURVE).exists():
        raise ConfigError(
            f"{out / OFFICIAL_CURVE} is missing: the official run's curve lives in the repository's "
            f"results/parity/dsact_pendulum/official/ ({SOURCE})"
        )
    name, groups = load_sweep(args.sweep)
    results: list[dict] = []

    def compare(_summaries) -> None:  # while the folder is still held
        from pgjax.report import write_report

        results.append(write_comparison(out))
        write_report([out], out)

    options = WriteOptions(
        mode="resume",
        progress=not args.quiet,
        resume_hint=f"pgjax compare-official --out {out}",
        scores=load_scores(args.sweep),
    )
    run_groups(name, groups, out, options, then=compare)
    print(markdown(results[0]))
    print(f"wrote {out}")
    return 0
