import pgjax  # noqa: F401  (sets XLA flags before jax initialises its backend)
import jax

jax.config.update("jax_enable_x64", False)
