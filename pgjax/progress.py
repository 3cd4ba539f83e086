"""The progress bar of a running group."""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar over env steps (all runs of a group together) with steps/s and the latest return."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=label, unit="step", unit_scale=True, file=sys.stderr, dynamic_ncols=True, leave=True
            )

    def update(self, steps: int, latest_return: float, steps_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(f"return {latest_return:.1f}, {steps_per_s:,.0f} steps/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
