"""Writing results: tidy curves.csv and metrics.csv, and runs.json, atomically, with the run metadata."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

CURVE_COLUMNS = ["agent", "env", "backend", "config_id", "seed", "env_steps", "wall_time_s",
                 "eval_return_mean", "eval_return_std", "train_return_mean", "status"]
METRIC_COLUMNS = ["agent", "env", "backend", "config_id", "seed", "env_steps", "metric", "value"]
VERSIONED = ["jax", "jaxlib", "flax", "optax", "brax", "gymnax", "chex", "flashbax", "pgjax"]


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tidy_csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in columns})
    return out.getvalue()


def curves_csv(rows: list[dict]) -> str:
    return tidy_csv(rows, CURVE_COLUMNS)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_curves(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.csv; none for results written before metrics were kept."""
    return read_curves(path) if Path(path).is_file() else []


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info() -> dict:
    import jax

    devices = jax.devices()
    return {"platform": devices[0].platform, "kind": devices[0].device_kind, "count": len(devices),
            "processes": jax.process_count(), "host": platform.machine()}


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def write_results(folder: Path, rows: list[dict], runs: dict, metric_rows: list[dict] = ()) -> None:
    """curves.csv, metrics.csv (the agents' training metrics per evaluation point) and runs.json."""
    write_atomic(Path(folder) / "curves.csv", curves_csv(rows))
    write_atomic(Path(folder) / "metrics.csv", tidy_csv(list(metric_rows), METRIC_COLUMNS))
    write_atomic(Path(folder) / "runs.json", json.dumps(runs, indent=2, sort_keys=False) + "\n")
