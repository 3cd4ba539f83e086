"""How many training iterations a budget holds: the one formula every horizon is derived from."""


def iterations_in_budget(total_steps: int, warmup_steps: int, steps_per_iteration: int) -> int:
    """Whole iterations that fit in `total_steps` after `warmup_steps`; a run never takes more."""
    return max(0, (total_steps - warmup_steps) // steps_per_iteration)
