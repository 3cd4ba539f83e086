"""Optional TensorBoard stream of a sweep (`--tensorboard DIR`): every evaluation point's curve and
training metrics as scalars, one event file per run (DIR/<config id>/seed_<s>), through tensorboardX."""

from __future__ import annotations

from pathlib import Path

from pgjax.config import ConfigError


def require_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs tensorboardX: pip install 'pgjax[tensorboard]'") from None
    return SummaryWriter


class TensorBoardStream:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.writer_class = require_writer()
        self.writers: dict[tuple, object] = {}

    def writer(self, row: dict):
        key = (row["config_id"], row["seed"])
        if key not in self.writers:
            self.writers[key] = self.writer_class(str(self.folder / row["config_id"] / f"seed_{row['seed']}"))
        return self.writers[key]

    def write(self, rows: list[dict], metric_rows: list[dict]) -> None:
        for row in rows:
            for column in ("eval_return_mean", "eval_return_std", "train_return_mean"):
                self.writer(row).add_scalar(f"curve/{column}", float(row[column]), int(row["env_steps"]))
        for row in metric_rows:
            self.writer(row).add_scalar(f"train/{row['metric']}", float(row["value"]), int(row["env_steps"]))
        for w in self.writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
