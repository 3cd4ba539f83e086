"""The `pgjax` command: list, run, sweep, report, bench."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pgjax.config import ConfigError, parse_assignments
from pgjax.registry import AGENT_NAMES

RESULTS = Path("results")


def _list(args) -> int:
    from pgjax.envs import BRAX_BACKENDS, ENV_NAMES

    print("agents:")
    for name in AGENT_NAMES:
        print(f"  {name}")
    print("environments:")
    for name in ENV_NAMES:
        print(f"  {name}")
    print(f"brax backends (--backend): {', '.join(BRAX_BACKENDS)}")
    return 0


def _print_results(results, out: Path) -> None:
    for r in results:
        s = r.summary()
        print(f"{s['agent']:>5} {s['env']:<28} {len(r.group.configs)} config(s) x {len(r.group.seeds)} seed(s): "
              f"final return {r.final_returns.mean():.1f}, compile {s['compile_s']:.1f}s, run {s['run_s']:.1f}s, "
              f"{s['steps_per_s']:,.0f} steps/s" + (f", {s['diverged_runs']} diverged" if s["diverged_runs"] else ""))
    print(f"wrote {out / 'curves.csv'}, {out / 'metrics.csv'} and {out / 'runs.json'}")


def _run(args) -> int:
    from pgjax.runner import make_group
    from pgjax.sweep import run_groups

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {args.seeds})")
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1 (got {args.steps})")
    overrides = parse_assignments(args.set)
    if "total_steps" in overrides:
        raise ConfigError("set the budget with --steps, not --set total_steps=...")
    overrides["total_steps"] = args.steps
    groups = make_group(args.agent, args.env, args.backend, list(range(args.seeds)), [overrides],
                        args.num_evals, args.eval_episodes, args.matmul_precision)
    name = args.name or f"{args.agent}-{args.env.split('/')[-1]}"
    out = Path(args.out) if args.out else RESULTS / name
    _print_results(run_groups(name, groups, out, progress=not args.quiet), out)
    return 0


def _sweep(args) -> int:
    from pgjax.sweep import load_sweep, run_groups

    name, groups = load_sweep(args.file, args.matmul_precision)
    out = Path(args.out) if args.out else RESULTS / name
    results = run_groups(name, groups, out, progress=not args.quiet)
    _print_results(results, out)
    if not args.no_report:
        from pgjax.report import write_report

        print(f"wrote {write_report([out], out)}")
    return 0


def _report(args) -> int:
    from pgjax.report import write_report

    folders = [Path(f) for f in args.folders]
    for f in folders:
        if not (f / "curves.csv").is_file():
            raise ConfigError(f"{f} has no curves.csv (run `pgjax sweep` or `pgjax run` first)")
    out = Path(args.out) if args.out else folders[0]
    print(f"wrote {write_report(folders, out)}")
    return 0


def _bench(args) -> int:
    from pgjax.bench import main as bench_main

    return bench_main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgjax", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list agents and environments").set_defaults(func=_list)

    r = sub.add_parser("run", help="train one agent on one environment over several seeds")
    r.add_argument("agent")
    r.add_argument("env")
    r.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1), vmapped together")
    r.add_argument("--steps", type=int, required=True, help="env steps per run")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    r.add_argument("--backend", default=None, help="brax physics backend")
    r.add_argument("--num-evals", type=int, default=20)
    r.add_argument("--eval-episodes", type=int, default=8)
    r.add_argument("--name", default=None, help="results folder name")
    r.add_argument("--out", default=None, help="results folder (default results/<name>)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--matmul-precision", default="highest", metavar="P",
                   help="float32 matmul precision: highest (default; true float32), high, tensorfloat32, default, ...")
    r.set_defaults(func=_run)

    s = sub.add_parser("sweep", help="run a sweep file")
    s.add_argument("file")
    s.add_argument("--out", default=None)
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--no-report", action="store_true")
    s.add_argument("--matmul-precision", default=None, metavar="P",
                   help="override the sweep file's matmul_precision (default highest: true float32)")
    s.set_defaults(func=_sweep)

    rep = sub.add_parser("report", help="tables and plots from one or more results folders")
    rep.add_argument("folders", nargs="+")
    rep.add_argument("--out", default=None, help="where report.md and plots go (default: first folder)")
    rep.set_defaults(func=_report)

    b = sub.add_parser("bench", help="time every agent on gymnax Pendulum (compile, run, steps/s, memory) and "
                       "the Brax adapter beside bare Brax on hopper")
    b.add_argument("--only", choices=[*AGENT_NAMES, "brax"], default=None)
    b.add_argument("--seeds", type=int, default=8)
    b.add_argument("--ppo-steps", type=int, default=1_000_000,
                   help="env steps of the on-policy agents' benches")
    b.add_argument("--sac-steps", type=int, default=40_000,
                   help="env steps of the SAC, DSAC-T, MDPO-off and PMOE-SAC benches")
    b.add_argument("--out", default=None, help="also write the figures as JSON here")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"pgjax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pgjax: interrupted; results written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
