"""pgjax: jitted, vmapped reference implementations of continuous-control RL agents."""
import os as _os

__version__ = "0.1.0"


def _one_cpu_device_per_core() -> None:
    """XLA:CPU runs one program mostly on one core when its ops are as small as ours (64-unit
    networks), so the runner shards seeds over devices; on a CPU host that needs one device per
    core (measured on 2 cores, 8 seeds: PPO and SAC 1.27x the steps/s of one device). Accelerator
    backends are unaffected. A user's own setting wins, and nothing changes once jax has started."""
    import jax

    if "JAX_NUM_CPU_DEVICES" in _os.environ or "device_count" in _os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", len(_os.sched_getaffinity(0)))
    except RuntimeError:  # backends already initialized by the caller: keep what they have
        pass


_one_cpu_device_per_core()


def __getattr__(name: str):
    """`pgjax.train` and `pgjax.load` (pgjax.api), imported on first use so `import pgjax` stays light."""
    if name in ("train", "load", "Trained"):
        from pgjax import api

        return getattr(api, name)
    raise AttributeError(f"module 'pgjax' has no attribute {name!r}")
