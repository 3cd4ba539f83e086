"""Reports: final-return tables (mean, IQM with bootstrap 95% intervals over seeds), learning-curve
plots per environment, and the run metadata of every results folder, so that two machines' or two
versions' results can be compared side by side."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from pgjax import aggregate
from pgjax.results import read_curves, read_metrics, write_atomic


def load_runs(folders: list[Path]) -> dict:
    """{(folder label, agent, env, backend, config_id): {seed: [(steps, return, status)]}}."""
    runs: dict = defaultdict(lambda: defaultdict(list))
    labels = folder_labels(folders)
    for folder, label in zip(folders, labels):
        for row in read_curves(folder / "curves.csv"):
            key = (label, row["agent"], row["env"], row["backend"], row["config_id"])
            runs[key][int(row["seed"])].append((int(row["env_steps"]), float(row["eval_return_mean"]), row["status"]))
    return runs


def load_metrics(folders: list[Path]) -> dict:
    """{(folder label, agent, env, backend, config_id): {metric: {env_steps: [value per seed]}}} from the
    folders that have a metrics.csv."""
    metrics: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for folder, label in zip(folders, folder_labels(folders)):
        for row in read_metrics(folder / "metrics.csv"):
            key = (label, row["agent"], row["env"], row["backend"], row["config_id"])
            metrics[key][row["metric"]][int(row["env_steps"])].append(float(row["value"]))
    return metrics


def final_metrics_table(metrics: dict, multi_folder: bool, labels: dict[str, str]) -> list[str]:
    """Each run's training metrics over the last chunk, mean over seeds."""
    head = ["agent", "env"] + (["results"] if multi_folder else []) + ["config", "training metrics (mean over seeds)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (label, agent, env, _backend, cid), per_metric in sorted(metrics.items(), key=lambda kv: kv[0][1:] + kv[0][:1]):
        values = [f"{name} {np.mean(by_step[max(by_step)]):.4g}" for name, by_step in sorted(per_metric.items())]
        cells = [agent, env] + ([label] if multi_folder else []) + [labels.get(cid) or cid, "; ".join(values)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def save_figure(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def panel_grid(count: int, max_cols: int, panel_size: tuple[float, float], dpi: int):
    """(pyplot, figure, axes) with `count` panels in rows of at most `max_cols`; spare panels hidden."""
    plt = _pyplot()
    cols = min(max_cols, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows), dpi=dpi, squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return plt, fig, axes


def plot_expert_usage(env: str, metrics: dict, out: Path, labels: dict[str, str]) -> Path | None:
    """Mixture-of-experts runs on `env`: each expert's share of k* over training (mean over seeds), one
    panel per run, with the gate's entropy dashed on the right axis. None when no run has experts."""
    runs = [(key, m) for key, m in sorted(metrics.items()) if key[2] == env and "expert_usage[0]" in m]
    if not runs:
        return None
    plt, fig, axes = panel_grid(len(runs), 3, (4.4, 3.3), 110)
    for ax, ((_label, agent, _, _, cid), m) in zip(axes.flat, runs):
        experts = sorted((n for n in m if n.startswith("expert_usage[")), key=lambda n: int(n[13:-1]))
        for name in experts:
            steps = sorted(m[name])
            ax.plot(steps, [np.mean(m[name][s]) for s in steps], label=f"expert {name[13:-1]}")
        if "gate_entropy" in m:
            steps = sorted(m["gate_entropy"])
            ax.twinx().plot(steps, [np.mean(m["gate_entropy"][s]) for s in steps], "k--", linewidth=1)
        ax.set_title(f"{agent} {labels.get(cid) or ''}".strip(), fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("share of states where expert is k*", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{env}: expert usage (dashed: gate entropy, right axis)", fontsize=10)
    return save_figure(plt, fig, out / f"experts_{env.replace('/', '_')}.png")


def plot_metrics(env: str, metrics: dict, out: Path, labels: dict[str, str], multi_folder: bool) -> Path | None:
    """The training metrics of the runs on `env` over training (mean over seeds), one panel per scalar
    metric, one line per run; vector metrics (expert usage) have their own plot."""
    runs = [(key, m) for key, m in sorted(metrics.items()) if key[2] == env]
    names = sorted({n for _, m in runs for n in m if "[" not in n})
    if not names:
        return None
    plt, fig, axes = panel_grid(len(names), 4, (4.0, 3.0), 100)
    for ax, name in zip(axes.flat, names):
        for (label, agent, _, _, cid), m in runs:
            if name in m:
                steps = sorted(m[name])
                run_name = f"{agent} {labels.get(cid) or ''}".strip() + (f" [{label}]" if multi_folder else "")
                ax.plot(steps, [np.mean(m[name][s]) for s in steps], label=run_name)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("environment steps", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{env}: training metrics (mean over seeds of each chunk's mean)", fontsize=10)
    return save_figure(plt, fig, out / f"metrics_{env.replace('/', '_')}.png")


def config_labels(folders: list[Path]) -> dict[str, str]:
    """config_id -> the config fields that differ between the configs of its agent on its env (the
    hyperparameters a reader needs to tell two curves apart), e.g. "reward_scale=0.01"."""
    configs: dict = {}
    for folder in folders:
        path = folder / "runs.json"
        if path.is_file():
            configs.update(json.loads(path.read_text()).get("configs", {}))
    siblings = defaultdict(list)
    for cid, c in configs.items():
        siblings[(c["agent"], c["env"])].append(cid)
    labels = {}
    for ids in siblings.values():
        fields = sorted({k for cid in ids for k in configs[cid]["config"]})
        differ = [k for k in fields if len({json.dumps(configs[cid]["config"].get(k)) for cid in ids}) > 1]
        for cid in ids:
            values = configs[cid]["config"]
            labels[cid] = ", ".join(f"{k}={_short(values.get(k))}" for k in differ)
    return labels


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def folder_labels(folders: list[Path]) -> list[str]:
    names = [f.resolve().name for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def run_curves(per_seed: dict) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """steps, returns [seeds, points], seeds, and how many seeds diverged (their returns count as NaN)."""
    seeds = sorted(per_seed)
    steps = np.array([s for s, _, _ in sorted(per_seed[seeds[0]])])
    returns = np.array([[r if status == "ok" else np.nan for _, r, status in sorted(per_seed[s])] for s in seeds])
    diverged = sum(any(st != "ok" for _, _, st in per_seed[s]) for s in seeds)
    return steps, returns, seeds, diverged


def final_table(runs: dict, multi_folder: bool, labels: dict[str, str]) -> list[str]:
    head = (
        ["agent", "env", "backend"]
        + (["results"] if multi_folder else [])
        + ["config_id", "config", "seeds", "env steps", "mean", "IQM", "IQM 95% CI", "diverged"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (label, agent, env, backend, cid), per_seed in sorted(runs.items(), key=lambda kv: kv[0][1:] + kv[0][:1]):
        steps, returns, seeds, diverged = run_curves(per_seed)
        final = returns[:, -1]
        final = final[np.isfinite(final)]
        if len(final):
            point, lo, hi = aggregate.task_iqm(final)
            mean, mid = f"{final.mean():.1f}", f"{point:.1f}"
            ci = f"[{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else "n/a"
        else:
            mean = mid = ci = "n/a"
        cells = (
            [agent, env, backend]
            + ([label] if multi_folder else [])
            + [cid, labels.get(cid, ""), str(len(seeds)), f"{steps[-1]:,}", mean, mid, ci, str(diverged)]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


PANEL_BUDGET_RATIO = 4  # series whose budgets differ more than this get their own panel


def budget_panels(budgets: list[int]) -> list[int]:
    """A panel index per series: budgets within PANEL_BUDGET_RATIO of the smallest in their panel share
    one, so a 20k-step off-policy curve is not squeezed against the axis of a 1M-step on-policy one."""
    panel_of, panels, first = {}, -1, None
    for budget in sorted(set(budgets)):
        if first is None or budget > PANEL_BUDGET_RATIO * first:
            panels, first = panels + 1, budget
        panel_of[budget] = panels
    return [panel_of[b] for b in budgets]


def plot_env(env: str, runs: dict, out: Path, multi_folder: bool, labels: dict[str, str]) -> Path:
    plt = _pyplot()

    configs_per_agent = defaultdict(set)  # on this env
    for label, agent, e, _backend, cid in runs:
        if e == env:
            configs_per_agent[(label, agent)].add(cid)
    series = []
    for (label, agent, e, _backend, cid), per_seed in sorted(runs.items()):
        if e != env:
            continue
        steps, returns, seeds, _ = run_curves(per_seed)
        name = agent + (f" {labels.get(cid) or cid}" if len(configs_per_agent[(label, agent)]) > 1 else "")
        name += f" [{label}]" if multi_folder else ""
        series.append((steps, returns, f"{name} ({len(seeds)} seeds)"))
    panel_of = budget_panels([int(steps[-1]) for steps, _, _ in series])
    num_panels = max(panel_of) + 1
    fig, axes = plt.subplots(1, num_panels, figsize=(6.4 * num_panels, 4.2), dpi=110, sharey=True, squeeze=False)
    for (steps, returns, name), panel in zip(series, panel_of):
        mid, lo, hi = aggregate.iqm_curve(returns)
        (line,) = axes[0, panel].plot(steps, mid, label=name)
        axes[0, panel].fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    backends = sorted({k[3] for k in runs if k[2] == env})
    fig.suptitle(f"{env} ({', '.join(backends)})")
    for ax in axes[0]:
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("evaluation return (IQM over seeds, 95% bootstrap CI)")
    return save_figure(plt, fig, out / f"curves_{env.replace('/', '_')}.png")


def read_scores(folders: list[Path]) -> tuple[dict, list[str]]:
    """The score normalisation the folders' sweep files gave (runs.json "scores"), the first folder's
    where they disagree, and a sentence for each task they disagree on."""
    scores: dict = {}
    disagreements = []
    for folder in folders:
        path = folder / "runs.json"
        for task, s in (json.loads(path.read_text()).get("scores") or {} if path.is_file() else {}).items():
            kept = scores.setdefault(task, s)
            if (kept["random"], kept["reference"]) != (s["random"], s["reference"]):
                disagreements.append(
                    f"{folder} normalises {task} with random {s['random']:g} and reference "
                    f"{s['reference']:g}; the first folder's {kept['random']:g} and "
                    f"{kept['reference']:g} are used."
                )
    return scores, disagreements


def method_finals(runs: dict, labels: dict[str, str], multi_folder: bool) -> dict[str, dict[str, np.ndarray]]:
    """{method: {env: final return per seed}}: a method is an agent (with its config's distinguishing
    fields where it ran several configs on one env, and its folder when comparing folders); a
    diverged run's final return is NaN."""
    per_env, backends = defaultdict(set), defaultdict(set)
    for label, agent, env, backend, cid in runs:
        per_env[(label, agent, env)].add(cid)
        backends[(label, agent, env)].add(backend)
    several = {(label, agent) for (label, agent, _), ids in per_env.items() if len(ids) > 1}
    finals: dict = defaultdict(dict)
    for (label, agent, env, backend, cid), per_seed in sorted(runs.items()):
        name = agent + (f" {labels.get(cid)}" if (label, agent) in several and labels.get(cid) else "")
        name += f" ({backend})" if len(backends[(label, agent, env)]) > 1 else ""
        name += f" [{label}]" if multi_folder else ""
        finals[name][env] = run_curves(per_seed)[1][:, -1]
    return finals


def aggregate_section(runs: dict, scores: dict, out: Path, labels: dict[str, str], multi_folder: bool) -> list[str]:
    """Normalised scores across the tasks that have a score normalisation: IQM and optimality gap with
    stratified-bootstrap CIs, performance profiles and probabilities of improvement (rliable)."""
    finals = method_finals(runs, labels, multi_folder)
    tasks = sorted(t for t in scores if all(t in per_task for per_task in finals.values()))
    left_out = sorted({t for per_task in finals.values() for t in per_task} - set(tasks))
    if not tasks:
        return (
            [
                "",
                "## Aggregate over tasks",
                "",
                f"Not computed: no task with a score normalisation ({', '.join(sorted(scores))}) was run by every "
                f"method ({', '.join(sorted(finals))}).",
            ]
            if scores
            else []
        )
    # a diverged run failed: it scores as the random policy
    finals = {
        m: {t: np.nan_to_num(per_task[t], nan=scores[t]["random"]) for t in tasks} for m, per_task in finals.items()
    }
    matrices = aggregate.score_matrices(finals, scores, tasks)
    estimates = aggregate.iqm_and_optimality_gap(matrices)
    runs_per_task = {m: x.shape[0] for m, x in matrices.items()}
    lines = [
        "",
        "## Aggregate over tasks",
        "",
        f"Final returns normalised per task (a uniform random policy = 0, the reference = 1; dmc/ tasks on DMC's "
        f"own scale, 0 and 1000) on {len(tasks)} "
        f"task(s): {', '.join(tasks)}. IQM and optimality gap (the mean shortfall below 1) across runs x "
        f"tasks with stratified-bootstrap 95% CIs ({aggregate.REPS} resamples), computed with rliable. A "
        "diverged run scores 0."
        + (
            f" Tasks without a score normalisation, or not run by every method, are left out: {', '.join(left_out)}."
            if left_out
            else ""
        ),
        "",
    ]
    few = sorted(m for m, n in runs_per_task.items() if n < aggregate.FEW_SEEDS)
    if few:
        lines += [
            f"**Fewer than {aggregate.FEW_SEEDS} runs per task** for {', '.join(few)}: their intervals rest "
            "on too few seeds to be trusted.",
            "",
        ]
    lines += [
        "| method | runs per task | IQM | IQM 95% CI | optimality gap | gap 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for m in sorted(estimates, key=lambda m: -estimates[m]["IQM"][0]):
        (iqm_, lo, hi), (gap, glo, ghi) = estimates[m]["IQM"], estimates[m]["optimality gap"]
        lines.append(
            f"| {m} | {runs_per_task[m]} | {iqm_:.3f} | [{lo:.3f}, {hi:.3f}] | {gap:.3f} | [{glo:.3f}, {ghi:.3f}] |"
        )
    lines += ["", "| task | random policy (0) | reference (1) | reference source |", "|---|---|---|---|"]
    lines += [
        f"| {t} | {scores[t]['random']:g} | {scores[t]['reference']:g} | {scores[t].get('source', '')} |" for t in tasks
    ]
    plots = [plot_aggregate(estimates, out)]
    taus = np.linspace(0.0, max(1.0, max(float(x.max()) for x in matrices.values())), 41)
    plots.append(plot_profiles(aggregate.performance_profiles(matrices, taus), taus, out))
    if len(matrices) > 1:
        improvement = aggregate.probability_of_improvement(matrices)
        plots.append(plot_improvement(improvement, sorted(matrices), out))
        lines += [
            "",
            "Probability of improvement P(row > column): the chance that a run of the row method on a "
            "random task scores above one of the column method (rliable; 95% CIs in the plot's data).",
        ]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    write_atomic(
        out / "aggregate.json",
        json.dumps(
            {
                "tasks": tasks,
                "scores": {t: scores[t] for t in tasks},
                "estimates": estimates,
                "runs_per_task": runs_per_task,
                "probability_of_improvement": {
                    f"{x} > {y}": v for (x, y), v in (improvement.items() if len(matrices) > 1 else [])
                },
            },
            indent=1,
        )
        + "\n",
    )
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_aggregate(estimates: dict, out: Path) -> Path:
    plt = _pyplot()
    methods = sorted(estimates, key=lambda m: estimates[m]["IQM"][0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(methods) + 1.5), dpi=110, sharey=True)
    for ax, stat in zip(axes, ("IQM", "optimality gap")):
        values = np.array([estimates[m][stat] for m in methods])
        ax.barh(
            methods,
            values[:, 0],
            xerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]],
            capsize=3,
            color="tab:blue",
            alpha=0.7,
        )
        ax.set_title(f"{stat} of normalised score (95% CI)", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    return save_figure(plt, fig, out / "aggregate.png")


def plot_profiles(profiles: tuple, taus: np.ndarray, out: Path) -> Path:
    plt = _pyplot()
    points, intervals = profiles
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for m in sorted(points):
        (line,) = ax.plot(taus, points[m], label=m)
        ax.fill_between(taus, intervals[m][0], intervals[m][1], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title("performance profiles (95% CI)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(plt, fig, out / "performance_profiles.png")


def plot_improvement(improvement: dict, methods: list[str], out: Path) -> Path:
    plt = _pyplot()
    matrix = np.full((len(methods), len(methods)), np.nan)
    for (x, y), (p, _, _) in improvement.items():
        matrix[methods.index(x), methods.index(y)] = p
    fig, ax = plt.subplots(figsize=(1.0 * len(methods) + 2.5, 0.8 * len(methods) + 1.5), dpi=110)
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="RdBu")
    for i, j in np.ndindex(matrix.shape):
        if np.isfinite(matrix[i, j]):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_title("P(row > column)", fontsize=10)
    fig.colorbar(image, ax=ax)
    return save_figure(plt, fig, out / "probability_of_improvement.png")


def metadata_lines(folders: list[Path], labels: list[str]) -> list[str]:
    lines = [
        "| results | commit | device | matmul precision | jax | brax | gymnax | compile s | run s | steps/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder, label in zip(folders, labels):
        path = folder / "runs.json"
        if not path.is_file():
            continue
        meta = json.loads(path.read_text())
        v, d = meta.get("versions", {}), meta.get("device", {})
        for g in meta.get("groups", []):
            lines.append(
                f"| {label} ({g['agent']} {g['env']}) | {meta.get('git_commit', '?')[:12]} | "
                f"{d.get('kind', '?')} x{d.get('count', '?')} | {g.get('matmul_precision', d.get('matmul_precision', '?'))} | "
                f"{v.get('jax', '?')} | {v.get('brax', '?')} | {v.get('gymnax', '?')} | "
                f"{g['compile_s']:.1f} | {g['run_s']:.1f} | {g['steps_per_s']:,.0f} |"
            )
    return lines


def group_speeds(folders: list[Path], labels: list[str]) -> dict[tuple[str, str], float]:
    """{(folder label, config_id): env steps per second of the group that ran it}."""
    speeds = {}
    for folder, label in zip(folders, labels):
        path = folder / "runs.json"
        for g in json.loads(path.read_text()).get("groups", []) if path.is_file() else []:
            speeds.update({(label, cid): g["steps_per_s"] for cid in g.get("config_ids", [])})
    return speeds


def final_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of b minus mean of a, and the half-width of its 95% interval (normal approximation)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    spread = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 else np.nan
    return float(b.mean() - a.mean()), float(1.96 * spread)


def comparison_section(runs: dict, folders: list[Path], labels: list[str], configs: dict[str, str]) -> list[str]:
    """Every folder against the first, run by run (same agent, env, backend and config): whether the
    curves are identical, the final returns' difference, and the speed ratio."""
    speeds = group_speeds(folders, labels)
    lines = [
        "",
        f"## Against {labels[0]}",
        "",
        f"Runs of the same agent, env, backend and config in {labels[0]} and another folder. identical: every "
        "seed's curve equal as stored (6 significant digits; the same code, seeds and devices give this); difference: "
        "mean final return minus the first folder's, with a 95% interval (normal approximation over seeds); "
        "speed: env steps per second relative to the first folder.",
        "",
        "| agent | env | config | results | seeds | identical | final mean | first's | difference | speed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    compared = 0
    for (label, agent, env, backend, cid), per_seed in sorted(runs.items()):
        first = runs.get((labels[0], agent, env, backend, cid))
        if label == labels[0] or first is None:
            continue
        steps_a, a, seeds_a, _ = run_curves(first)
        steps_b, b, seeds_b, _ = run_curves(per_seed)
        identical = seeds_a == seeds_b and np.array_equal(steps_a, steps_b) and np.array_equal(a, b, equal_nan=True)
        diff, half = final_difference(a[:, -1], b[:, -1])
        ratio = speeds.get((label, cid), np.nan) / speeds.get((labels[0], cid), np.nan)
        lines.append(
            f"| {agent} | {env} | {configs.get(cid) or cid} | {label} | {len(seeds_b)} vs {len(seeds_a)} | "
            f"{'yes' if identical else 'no'} | {np.nanmean(b[:, -1]):.1f} | {np.nanmean(a[:, -1]):.1f} | "
            f"{diff:+.1f} ± {half:.1f} | {f'{ratio:.2f}x' if np.isfinite(ratio) else 'n/a'} |"
        )
        compared += 1
    return (
        lines
        if compared
        else lines[:3]
        + [f"No run of another folder has the same agent, env, backend and config as one in {labels[0]}."]
    )


def write_report(folders: list[Path], out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(folders)
    labels = folder_labels(folders)
    multi_folder = len(folders) > 1
    envs = sorted({k[2] for k in runs})
    configs = config_labels(folders)
    plots = [plot_env(env, runs, out, multi_folder, configs) for env in envs]
    lines = [
        "# pgjax report",
        "",
        f"Results: {', '.join(str(f) for f in folders)}",
        "",
        "## Final evaluation return",
        "",
        "Return of the deterministic policy at the last evaluation point, over seeds; "
        "IQM = interquartile mean, with a percentile bootstrap 95% interval "
        f"({aggregate.REPS} resamples of the seeds, rliable); the curves show the same statistic (their "
        f"bands from {aggregate.REPS // 2} resamples). "
        "Diverged runs are left out of the statistics.",
        "",
    ]
    lines += final_table(runs, multi_folder, configs)
    if multi_folder:
        lines += comparison_section(runs, folders, labels, configs)
    scores, disagreements = read_scores(folders)
    scores = aggregate.with_dmc_scale(scores, envs)
    lines += aggregate_section(runs, scores, out, configs, multi_folder)
    lines += [""] + disagreements if disagreements else []
    lines += ["", "## Learning curves", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    metrics = load_metrics(folders)
    expert_plots = [p for p in (plot_expert_usage(env, metrics, out, configs) for env in envs) if p]
    if expert_plots:
        lines += ["", "## Expert usage", ""] + [f"![{p.stem}]({p.name})" for p in expert_plots]
    if metrics:
        lines += ["", "## Training metrics", "", "Averaged over the last chunk of iterations.", ""]
        lines += final_metrics_table(metrics, multi_folder, configs)
        metric_plots = [p for p in (plot_metrics(env, metrics, out, configs, multi_folder) for env in envs) if p]
        lines += [""] + [f"![{p.stem}]({p.name})" for p in metric_plots]
    lines += ["", "## Runs", ""]
    lines += metadata_lines(folders, labels)
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
