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
VERSIONED = ["jax", "jaxlib", "flax", "optax", "brax", "gymnax", "playground", "mujoco", "mujoco-mjx", "chex", "flashbax",
             "pgjax"]


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it the file
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tidy_csv(rows: list[dict], columns: list[str], header: bool = True) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in columns})
    return out.getvalue()


def curves_csv(rows: list[dict]) -> str:
    return tidy_csv(rows, CURVE_COLUMNS)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_curves(path: Path) -> list[dict]:
    """The whole rows of a tidy CSV; a last line cut short by a kill mid-append is left out."""
    text = Path(path).read_text()
    return list(csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1])))


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


def append_durably(path: Path, text: str) -> None:
    """Append whole rows and flush them to disk before the caller goes on (a checkpoint saved next must
    never be ahead of the rows)."""
    with open(path, "a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class Interrupted(Exception):
    """A sweep stopped by the user; the message says what is on disk and how to go on."""


class ResultsFolder:
    """A results folder written as runs progress: curve and metric rows appended at every evaluation
    point, runs.json replaced atomically, group checkpoints under checkpoints/. With several processes
    only one writes (`writes`); the others' writes do nothing."""

    def __init__(self, path: Path, writes: bool = True):
        self.path = Path(path)
        self.writes = writes
        self.curves, self.metrics, self.runs = (self.path / n for n in ("curves.csv", "metrics.csv", "runs.json"))
        self.checkpoints = self.path / "checkpoints"
        self.policies = self.path / "policies"

    def holds_results(self) -> bool:
        return any(p.exists() for p in (self.curves, self.metrics, self.runs, self.checkpoints, self.policies))

    def read_runs(self) -> dict | None:
        return json.loads(self.runs.read_text()) if self.runs.is_file() else None

    def clear(self) -> None:
        if not self.writes:
            return
        import shutil

        for p in (self.curves, self.metrics, self.runs):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        shutil.rmtree(self.policies, ignore_errors=True)

    def start(self) -> None:
        """Headers for the CSVs rows are appended to, where they do not exist yet."""
        if not self.writes:
            return
        for path, columns in ((self.curves, CURVE_COLUMNS), (self.metrics, METRIC_COLUMNS)):
            if not path.is_file():
                write_atomic(path, tidy_csv([], columns))

    def keep_rows(self, keep) -> None:
        """Rewrite curves.csv and metrics.csv with the rows `keep(row)` accepts (atomically; headers
        only when there are none yet)."""
        if not self.writes:
            return
        for path, columns in ((self.curves, CURVE_COLUMNS), (self.metrics, METRIC_COLUMNS)):
            rows = read_curves(path) if path.is_file() else []
            write_atomic(path, tidy_csv([r for r in rows if keep(r)], columns))

    def append(self, rows: list[dict], metric_rows: list[dict]) -> None:
        if not self.writes:
            return
        append_durably(self.curves, tidy_csv(rows, CURVE_COLUMNS, header=False))
        if metric_rows:
            append_durably(self.metrics, tidy_csv(metric_rows, METRIC_COLUMNS, header=False))

    def write_runs(self, runs: dict) -> None:
        if not self.writes:
            return
        write_atomic(self.runs, json.dumps(runs, indent=2, sort_keys=False) + "\n")
