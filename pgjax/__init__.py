"""pgjax: jitted, vmapped reference implementations of continuous-control RL agents."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`pgjax.train` and `pgjax.load` (pgjax.api), imported on first use so `import pgjax` stays light."""
    if name in ("train", "load", "Trained"):
        from pgjax import api

        return getattr(api, name)
    raise AttributeError(f"module 'pgjax' has no attribute {name!r}")
