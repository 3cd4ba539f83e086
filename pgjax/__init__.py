"""pgjax: jitted, vmapped reference implementations of continuous-control RL agents."""
import os as _os

__version__ = "0.1.0"

# XLA:CPU in jaxlib 0.10 can deadlock (all workers idle, the host waiting forever) when running
# vmapped programs with nested while loops, such as a vmapped SAC run; its concurrency-optimized
# scheduler is the trigger (measured here: 5/5 hangs of a vmapped SAC init without this flag, 0/8 with
# it). The flag must be set before jax creates its CPU backend, hence here; a user's own XLA_FLAGS win.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=false").strip()
