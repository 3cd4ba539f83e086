"""Writing results: tidy curves.csv and metrics.csv, and runs.json, atomically, with the run metadata."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

CURVE_COLUMNS = [
    "agent",
    "env",
    "backend",
    "config_id",
    "seed",
    "env_steps",
    "wall_time_s",
    "eval_return_mean",
    "eval_return_std",
    "train_return_mean",
    "status",
]
METRIC_COLUMNS = ["agent", "env", "backend", "config_id", "seed", "env_steps", "metric", "value"]
VERSIONED = [
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "brax",
    "gymnax",
    "playground",
    "mujoco",
    "mujoco-mjx",
    "chex",
    "flashbax",
    "pgjax",
]


class WriteFailed(Exception):
    """A write into a results folder failed (a full disk, a quota, a lost mount); what was written before
    it is whole: rows up to the last complete one, the last finalised checkpoint, runs.json as it was."""


def free_space(path: Path) -> str:
    """The free space on the filesystem that holds `path` (or would), for an error message."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f"{human_bytes(shutil.disk_usage(path).free)} free there"
    except OSError:
        return "free space unknown"


def human_bytes(n: int) -> str:
    unit, size = next(((u, s) for u, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)) if n >= s), ("B", 1))
    return f"{n / size:.1f} {unit}" if size > 1 else f"{n} B"


def write_failure(path: Path, error: BaseException) -> WriteFailed:
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
    return WriteFailed(f"cannot write {path}: {reason} ({free_space(path)})")


@contextlib.contextmanager
def writing(path: Path, failures=(OSError,)):
    """Turns a failed write of `path` (any of `failures`) into one WriteFailed line naming it and the free
    space; the CLI stops on it with exit code 1."""
    try:
        yield
    except WriteFailed:
        raise
    except failures as e:
        raise write_failure(path, e) from e


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file, and a failed
    write leaves the previous one."""
    path = Path(path)
    with writing(path):
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


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_curves(path: Path) -> list[dict]:
    """The whole rows of a tidy CSV; a last line cut short by a kill mid-append is left out."""
    text = Path(path).read_text()
    return list(csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1])))


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
    return {
        "platform": devices[0].platform,
        "kind": devices[0].device_kind,
        "count": len(devices),
        "processes": jax.process_count(),
        "host": platform.machine(),
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    """The host processor's model name: XLA:CPU compiles for the processor it runs on, so the same versions
    on another CPU model round differently and give other curves (docs/reproducibility.md)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            # results/ left out: a sweep rewriting its own committed folder does not make the code dirty
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def append_durably(path: Path, text: str) -> None:
    """Append whole rows and flush them to disk before the caller goes on (a checkpoint saved next must
    never be ahead of the rows). A write cut short leaves part of a line, which readers leave out and a
    resume removes."""
    with writing(path), open(path, "a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class Interrupted(Exception):
    """A sweep stopped by the user; the message says what is on disk and how to go on."""


LOCK_NAME = ".pgjax-lock"


class FolderLock:
    """A results folder's one writer: an OS lock (flock) on the folder's .pgjax-lock file, which names the
    holder (pid, host, start time). The kernel drops the lock when the holder's process ends, however it
    ends, so a killed command never leaves the folder locked and a resume can take it at once. Readers
    (`pgjax report`) do not take it."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    def take(self) -> str | None:
        """None when this process now holds the folder, else the line that refuses it (naming the holder)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            return str(write_failure(self.path, e))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 1024).decode(errors="replace").strip() or "its holder is starting"
            os.close(fd)
            if not isinstance(e, BlockingIOError):  # a filesystem without locks
                return f"cannot lock {self.path}: {e.strerror}; write elsewhere with --out"
            who = (
                "this process"
                if holder.startswith(f"pid {os.getpid()} on {socket.gethostname()},")
                else "another pgjax command"
            )
            return (
                f"{self.path.parent} is in use by {who} ({holder}); let it finish or stop it, "
                "or write elsewhere with --out"
            )
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {since}\n".encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the lock
            self.fd = None


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
