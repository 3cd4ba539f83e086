"""Defaults the command line shares with the library, in a module that imports nothing, so that building
the parser loads neither JAX's backends nor the environments before `--cpu-devices` or
`jax.distributed` are set up."""

DEFAULT_NUM_EVALS = 20
DEFAULT_EVAL_EPISODES = 8
DEFAULT_MATMUL_PRECISION = "highest"  # true float32 matmuls on every device
