import pgjax  # noqa: F401  (asks for one CPU device per core before jax initialises its backend)
import jax

jax.config.update("jax_enable_x64", False)
