"""The `pgjax` command: list, run, sweep, report, compare, bench, compare-brax, compare-official."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from pgjax.config import ConfigError, parse_assignments
from pgjax.defaults import DEFAULT_EVAL_EPISODES, DEFAULT_MATMUL_PRECISION, DEFAULT_NUM_EVALS
from pgjax.registry import AGENT_NAMES

RESULTS = Path("results")


def _list(args) -> int:
    from pgjax.envs import ENV_NAMES, FAMILY_BACKENDS, default_backend, family, unavailable_reason

    print("agents:")
    for name in AGENT_NAMES:
        print(f"  {name}")
    print("environments (backends, the default first; dmc/ returns lie in [0, 1000]):")
    for name in ENV_NAMES:
        first = default_backend(name)
        backends = [first] + [b for b in FAMILY_BACKENDS[family(name)] if b != first]
        shown = [b + (" (not installed)" if unavailable_reason(name, b) else "") for b in backends]
        print(f"  {name:40s} {', '.join(shown)}")
    return 0


def _config(args) -> int:
    from pgjax.config import describe_fields
    from pgjax.names import check_agent
    from pgjax.registry import get_agent

    check_agent(args.agent)
    rows = describe_fields(get_agent(args.agent).Config)
    shown = [{**r, "default": _toml_value(r["default"])} for r in rows]
    widths = {k: max(len(k), *(len(str(r[k])) for r in shown)) for k in ("field", "default", "type", "kind")}
    print("  ".join(k.ljust(widths[k]) for k in widths) + "  meaning")
    for r in shown:
        print("  ".join(str(r[k]).ljust(widths[k]) for k in widths) + "  " + r["meaning"])
    print(
        "\nSet with --set FIELD=VALUE (TOML values: lr=1e-3, hidden_sizes=[64, 64], anneal_lr=false) or a "
        "sweep file's config/grid; a grid over float fields is one compiled program."
    )
    return 0


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def _baseline(args) -> int:
    import jax
    import numpy as np

    from pgjax.driver import uniform_random_returns
    from pgjax.envs import make

    if args.episodes < 2:
        raise ConfigError(f"--episodes must be >= 2 (got {args.episodes})")
    env = make(args.env, args.backend)
    returns = np.asarray(
        jax.jit(uniform_random_returns, static_argnums=(0, 2))(env, jax.random.PRNGKey(args.seed), args.episodes)
    )
    half_width = 1.96 * returns.std(ddof=1) / np.sqrt(len(returns))
    print(
        f"{args.env}{f' ({args.backend})' if args.backend else ''}: uniform random actions, {len(returns)} "
        f"episodes: mean return {returns.mean():.4g} ± {half_width:.2g} (95% CI), std {returns.std(ddof=1):.4g}"
    )
    print(
        f'[scores."{args.env}"]\nrandom = {returns.mean():.4g}  # pgjax baseline {args.env} '
        f"--episodes {args.episodes} --seed {args.seed}" + (f" --backend {args.backend}" if args.backend else "")
    )
    return 0


def _print_results(summaries: list[dict], out: Path) -> None:
    from pgjax.distributed import is_writer

    if not is_writer():
        return
    for s in summaries:
        print(
            f"{s['agent']:>5} {s['env']:<28} {len(s['config_ids'])} config(s) x {len(s['seeds'])} seed(s): "
            f"final return {s['final_return_mean']:.1f}, compile {s['compile_s']:.1f}s, run {s['run_s']:.1f}s, "
            f"{s['steps_per_s']:,.0f} steps/s" + (f", {s['diverged_runs']} diverged" if s["diverged_runs"] else "")
        )
    print(f"wrote {out / 'curves.csv'}, {out / 'metrics.csv'} and {out / 'runs.json'}")


def _write_mode(args) -> str:
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    return "resume" if args.resume else "overwrite" if args.overwrite else "new"


def _resume_command(argv: list[str]) -> str:
    """The command line that continues this one."""
    words = [w for w in argv if w not in ("--resume", "--overwrite")]
    return " ".join(shlex.quote(w) for w in ["pgjax", *words, "--resume"])


def _run(args) -> int:
    from pgjax.groups import make_group

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {args.seeds})")
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1 (got {args.steps})")
    overrides = parse_assignments(args.set)
    if "total_steps" in overrides:
        raise ConfigError("set the budget with --steps, not --set total_steps=...")
    overrides["total_steps"] = args.steps
    if args.preset:
        from pgjax.presets import preset_overrides

        overrides = {**preset_overrides(args.preset, args.agent, args.env, args.steps), **overrides}
    groups = make_group(
        args.agent,
        args.env,
        args.backend,
        list(range(args.seeds)),
        [overrides],
        args.num_evals,
        args.eval_episodes,
        args.matmul_precision,
    )
    name = args.name or f"{args.agent}-{args.env.split('/')[-1]}"
    return _run_groups(args, name, groups)


def _run_groups(args, name: str, groups, scores: dict | None = None) -> int:
    """Runs the groups under the command's output, write mode, checkpoints, logging and report options."""
    from pgjax.sweep import WriteOptions, run_groups

    out = Path(args.out) if args.out else RESULTS / name
    options = WriteOptions(
        mode=_write_mode(args),
        progress=not args.quiet,
        checkpoint_every=args.checkpoint_every,
        resume_hint=_resume_command(args.argv),
        tensorboard=args.tensorboard,
        scores=scores or {},
        device_memory=_device_memory(args),
    )
    run_groups(name, groups, out, options, then=_finish(args, out))
    return 0


def _sweep(args) -> int:
    from pgjax.sweep import load_scores, load_sweep

    name, groups = load_sweep(args.file, args.matmul_precision)
    return _run_groups(args, name, groups, scores=load_scores(args.file))


def _finish(args, out: Path):
    """What a run or sweep does with its summaries while it still holds the folder: print them and write
    the report."""

    def finish(summaries: list[dict]) -> None:
        _print_results(summaries, out)
        _write_report(args, out)

    return finish


def _compare_official(args) -> int:
    from pgjax.reference_run import main as compare_main

    return compare_main(args)


def _device_memory(args) -> int | None:
    from pgjax.memory import parse_bytes

    return None if args.device_memory is None else parse_bytes(args.device_memory)


def _write_report(args, out: Path) -> None:
    from pgjax.distributed import is_writer

    if not args.no_report and is_writer():
        from pgjax.report import write_report

        print(f"wrote {write_report([out], out)}")


def _report(args) -> int:
    from pgjax.report import write_report

    folders = [Path(f) for f in args.folders]
    for f in folders:
        if not (f / "curves.csv").is_file():
            raise ConfigError(f"{f} has no curves.csv (run `pgjax sweep` or `pgjax run` first)")
    out = Path(args.out) if args.out else folders[0]
    print(f"wrote {write_report(folders, out)}")
    return 0


def _compare(args) -> int:
    from pgjax.compare import main as compare_main

    return compare_main(args)


def _bench(args) -> int:
    from pgjax.bench import main as bench_main

    return bench_main(args)


def _compare_brax(args) -> int:
    from pgjax.trainer_comparison import main as compare_main

    return compare_main(args)


def _add_device_options(p: argparse.ArgumentParser, processes: bool) -> None:
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        metavar="N",
        help="CPU devices to split runs over (default: one per core)",
    )
    if not processes:
        return
    p.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="jax.distributed: process 0's address; with --num-processes and --process-id",
    )
    p.add_argument("--num-processes", type=int, default=None, metavar="N")
    p.add_argument("--process-id", type=int, default=None, metavar="I")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="start jax.distributed with what the cluster sets (SLURM, Open MPI, Cloud TPU); "
        "automatic in a multi-task SLURM or Open MPI job",
    )


def _add_write_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the results in the output folder from their last checkpoints (finished groups "
        "are skipped; curves are bit-identical to an uninterrupted run on the same machine)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the results in the output folder")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="save each group's run state every N evaluation points (default: at the first "
        "evaluation point a minute or more after the previous save)",
    )
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also stream curves and training metrics to TensorBoard event files in DIR",
    )
    p.add_argument(
        "--device-memory",
        default=None,
        metavar="SIZE",
        help="the memory one device may use for a group's runs (e.g. 16G, 512M): a group estimated to "
        "need more is refused before it runs (default: what an accelerator reports; no limit "
        "on a CPU)",
    )


def use_cpu_devices(count: int | None) -> None:
    """The CLI's CPU device count: one per core unless --cpu-devices or the user's JAX settings say
    otherwise. XLA:CPU runs one program mostly on one core when its ops are as small as ours (64-unit
    networks), so the runner shards seeds over devices (measured on 2 cores, 8 seeds: PPO and SAC 1.27x
    the steps/s of one device). Accelerator backends are unaffected. `import pgjax` sets nothing: a
    library user's JAX is theirs."""
    import jax

    if count is not None and count < 1:
        raise ConfigError(f"--cpu-devices must be >= 1 (got {count})")
    user_set = "JAX_NUM_CPU_DEVICES" in os.environ or "device_count" in os.environ.get("XLA_FLAGS", "")
    if count is None and user_set:
        return
    try:
        jax.config.update("jax_num_cpu_devices", count or len(os.sched_getaffinity(0)))
    except RuntimeError:  # JAX already started in this process (the CLI called from Python)
        if count is not None and count != len(jax.devices("cpu")):
            raise ConfigError(
                f"--cpu-devices {count}: JAX has already started with {len(jax.devices('cpu'))} "
                "CPU device(s) in this process"
            ) from None


def start_devices(args) -> None:
    """CPU devices, then the distributed runtime where asked or where a cluster launched us: both must
    come before JAX starts its backends."""
    from pgjax import distributed

    use_cpu_devices(getattr(args, "cpu_devices", None))
    if hasattr(args, "coordinator"):
        distributed.start(args.coordinator, args.num_processes, args.process_id, args.distributed)


def compile_cache_dir(option: str | None) -> Path | None:
    """The persistent compilation cache: --compile-cache, else $PGJAX_COMPILE_CACHE, else the user's cache
    folder; "off" turns it off."""
    chosen = option or os.environ.get("PGJAX_COMPILE_CACHE")
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pgjax" / "xla"


def use_compile_cache(folder: Path | None) -> None:
    """XLA programs compiled once are loaded from disk by later commands (a sweep resumed, a run repeated);
    only programs that took over a second to compile are kept."""
    if folder is None:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgjax", description=__doc__)
    from pgjax import __version__

    p.add_argument("--version", action="version", version=f"pgjax {__version__}")
    p.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR|off",
        help="persistent XLA compilation cache (default $PGJAX_COMPILE_CACHE or ~/.cache/pgjax/xla)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list agents and environments").set_defaults(func=_list)
    c = sub.add_parser("config", help="every config field of an agent: default, type, float or static, meaning")
    c.add_argument("agent")
    c.set_defaults(func=_config)

    bl = sub.add_parser(
        "baseline",
        help="a uniform random policy's mean return on an environment (a task's score 0 in a sweep file's [scores])",
    )
    bl.add_argument("env")
    bl.add_argument("--backend", default=None, help="physics backend (brax's, or Playground's for dmc/)")
    bl.add_argument("--episodes", type=int, default=256)
    bl.add_argument("--seed", type=int, default=0)
    _add_device_options(bl, processes=False)
    bl.set_defaults(func=_baseline)

    r = sub.add_parser("run", help="train one agent on one environment over several seeds")
    r.add_argument("agent")
    r.add_argument("env")
    r.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1), vmapped together")
    r.add_argument("--steps", type=int, required=True, help="env steps per run")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    r.add_argument("--backend", default=None, help="physics backend (brax's, or Playground's for dmc/)")
    r.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="named hyperparameters under the --set overrides (playground: Playground's tuned Brax "
        "PPO/SAC parameters for a dmc/ task)",
    )
    r.add_argument("--num-evals", type=int, default=DEFAULT_NUM_EVALS)
    r.add_argument("--eval-episodes", type=int, default=DEFAULT_EVAL_EPISODES)
    r.add_argument("--name", default=None, help="results folder name")
    r.add_argument("--out", default=None, help="results folder (default results/<name>)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--no-report", action="store_true", help="skip report.md and the plots")
    r.add_argument(
        "--matmul-precision",
        default=DEFAULT_MATMUL_PRECISION,
        metavar="P",
        help="float32 matmul precision: highest (default; true float32), high, tensorfloat32, default, ...",
    )
    _add_write_options(r)
    _add_device_options(r, processes=True)
    r.set_defaults(func=_run)

    s = sub.add_parser("sweep", help="run a sweep file")
    s.add_argument("file")
    s.add_argument("--out", default=None)
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--no-report", action="store_true")
    s.add_argument(
        "--matmul-precision",
        default=None,
        metavar="P",
        help="override the sweep file's matmul_precision (default highest: true float32)",
    )
    _add_write_options(s)
    _add_device_options(s, processes=True)
    s.set_defaults(func=_sweep)

    rep = sub.add_parser("report", help="tables and plots from one or more results folders")
    rep.add_argument("folders", nargs="+")
    rep.add_argument("--out", default=None, help="where report.md and plots go (default: first folder)")
    rep.set_defaults(func=_report)

    cmp = sub.add_parser(
        "compare",
        help="two results folders of one sweep, group by group: identical curves, final-return difference with a "
        "bootstrap 95%% interval, a verdict; exit 1 when a group differs beyond --tolerance",
    )
    cmp.add_argument("first", metavar="A", help="the reference results folder")
    cmp.add_argument("second", metavar="B", help="the results folder compared with it (same sweep)")
    cmp.add_argument(
        "--tolerance",
        default="0",
        help="how far a group's mean final return may move before the command fails, in return units (10) or "
        "relative to A's (5%%); a group fails only when its 95%% interval also excludes zero (a group of one seed has no "
        "interval: the tolerance alone decides; default 0)",
    )
    cmp.set_defaults(func=_compare)

    b = sub.add_parser(
        "bench",
        help="time every agent on gymnax Pendulum (compile, run, steps/s, memory) and "
        "the Brax adapter beside bare Brax on hopper",
    )
    b.add_argument("--only", choices=[*AGENT_NAMES, "brax", "dmc", "gymnax"], default=None)
    b.add_argument("--seeds", type=int, default=8)
    b.add_argument("--ppo-steps", type=int, default=1_000_000, help="env steps of the on-policy agents' benches")
    b.add_argument(
        "--sac-steps", type=int, default=40_000, help="env steps of the SAC, DSAC-T, MDPO-off and PMOE-SAC benches"
    )
    b.add_argument("--out", default=None, help="also write the figures as JSON here")
    b.add_argument(
        "--record",
        default="results/bench",
        metavar="DIR|off",
        help="append the figures, with date, commit, device and versions, to DIR/<machine kind>.jsonl "
        "(default results/bench; off: do not)",
    )
    b.add_argument(
        "--scaling",
        action="store_true",
        help="only the PPO bench's group on 1, 2, 4, ... devices: seconds and steps/s per device count",
    )
    b.add_argument(
        "--critic-layer-norm",
        action="store_true",
        help="only the twin critics' gradient with and without layer norm, alone and vmapped over --seeds",
    )
    b.add_argument(
        "--compile",
        action="store_true",
        help="only where compile time goes: per program (init, advance, evaluate) seconds tracing, lowering "
        "and compiling, program size and copies of the physics, for PPO with Playground's parameters "
        "on two dmc/ tasks and the PPO and SAC benches (--only ppo|sac|dmc|gymnax narrows it)",
    )
    b.add_argument(
        "--checkpoint-overhead",
        action="store_true",
        help="also time each bench with a sweep's checkpoints and row writes at every one of the "
        "default number of evaluation points",
    )
    _add_device_options(b, processes=False)
    b.set_defaults(func=_bench)

    cb = sub.add_parser(
        "compare-brax",
        help="Brax's own ppo.train or sac.train with Playground's tuned parameters "
        "beside our ppo or sac on a dmc/ task: compile s, steps/s, return at equal env steps, and "
        "the parity of ours with Brax's choices (--preset brax) against Brax",
    )
    cb.add_argument("--agent", default="ppo", choices=("ppo", "sac"))
    cb.add_argument("--task", default="CartpoleSwingup", help="a dmc/ task name without the prefix")
    cb.add_argument(
        "--steps",
        type=int,
        default=4_915_200,
        help="env steps per seed (default: five of Playground's 983,040-step PPO updates)",
    )
    cb.add_argument("--num-evals", type=int, default=5, help="evaluations after the initial one")
    cb.add_argument("--seeds", type=int, default=3)
    cb.add_argument("--eval-episodes", type=int, default=16)
    cb.add_argument(
        "--trainers",
        default="ours,brax,brax-published",
        metavar="NAMES",
        help="comma-separated, from ours (--preset playground), ours-brax (--preset brax, networks "
        "sized as brax's), brax (PPO: networks sized as ours), brax-published (PPO only); each "
        "finished piece (ours: all seeds; Brax: one seed) is kept, and a repeated command runs only "
        "the pieces not yet in --out",
    )
    cb.add_argument("--out", default="results/brax_ppo")
    _add_device_options(cb, processes=False)
    cb.set_defaults(func=_compare_brax)

    co = sub.add_parser(
        "compare-official",
        help="our dsact beside the Pendulum run the DSAC-T authors committed: "
        "runs (or resumes) the sweep with its configuration, then plots ours over theirs with the "
        "samples at which each first reaches -250",
    )
    co.add_argument("--sweep", default="sweeps/dsact_official.toml")
    co.add_argument(
        "--out",
        default="results/parity/dsact_pendulum",
        help="holds official/ (the authors' curve and config) and receives our runs",
    )
    co.add_argument("--quiet", action="store_true")
    _add_device_options(co, processes=False)
    co.set_defaults(func=_compare_official)
    return p


def main(argv: list[str] | None = None) -> int:
    from pgjax.results import Interrupted, WriteFailed

    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        if args.func not in (_list, _config, _report, _compare):
            start_devices(args)
            use_compile_cache(compile_cache_dir(args.compile_cache))
        return args.func(args)
    except ConfigError as e:
        print(f"pgjax: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"pgjax: {e}", file=sys.stderr)
        return 130
    except WriteFailed as e:
        print(
            f"pgjax: error: {e}; what was written before it is kept: free space (or fix what failed), then continue with "
            f"{_resume_command(argv) if args.func in (_run, _sweep) else 'the same command'}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("pgjax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
